"""Graded exercises: stubs a student fills in, and their checkers (exercises/README.md)."""
