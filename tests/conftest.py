"""Shared fixtures: a tiny random Qwen2 model folder and a small local problem file.

No test reaches the Hugging Face hub: HF_HUB_OFFLINE is set before transformers is imported.
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402

from toy.random_qwen2 import TOY_PROBLEMS, build_random_qwen2  # noqa: E402


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory):
    """A tiny Qwen2 model + BPE tokenizer (pad == EOS, chat template), built once per run."""
    return build_random_qwen2(str(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="session")
def toy_problems_file(tmp_path_factory):
    """TOY_PROBLEMS as a .jsonl file, the format train.py and eval.py accept."""
    path = tmp_path_factory.mktemp("data") / "problems.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in TOY_PROBLEMS))
    return str(path)
