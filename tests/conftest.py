"""Shared fixtures: a tiny random Qwen2 model folder and a small local problem file.

No test reaches the Hugging Face hub: HF_HUB_OFFLINE is set before transformers is imported.
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
from tiny_model import TINY_PROBLEMS, build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2 model + BPE tokenizer (pad == EOS, chat template), built once per run."""
    return build_tiny_model(str(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="session")
def tiny_problems_file(tmp_path_factory):
    """TINY_PROBLEMS as a .jsonl file, the format train.py and eval.py accept."""
    path = tmp_path_factory.mktemp("data") / "problems.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in TINY_PROBLEMS))
    return str(path)
