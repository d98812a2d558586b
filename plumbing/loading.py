"""Loading a model and its tokenizer, and picking the device and dtype: plumbing for rollout.py,
train.py and eval.py (`rollout.load_model_and_tokenizer` is the same function)."""

import os

import torch


class ModelLoadError(RuntimeError):
    """A model or tokenizer that cannot be loaded; the message says what to do."""


def resolve_model_name(name):
    """A bare Qwen model name means the Qwen organisation's hub repo; paths stay as they are.

    >>> resolve_model_name("Qwen2.5-Math-1.5B"), resolve_model_name("org/model")
    ('Qwen/Qwen2.5-Math-1.5B', 'org/model')
    """
    if os.path.exists(name) or "/" in name or not name.lower().startswith("qwen"):
        return name
    return f"Qwen/{name}"


def pick_device_dtype(dtype="auto"):
    """CUDA with bfloat16 when there is a GPU, else CPU float32 (bf16 matmuls are slow there)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return torch.device(device), getattr(torch, dtype)


def peak_memory_mb(device):
    """Peak memory so far: CUDA allocator peak on a GPU, the process's peak RSS (VmHWM) on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:  # Linux; elsewhere report nothing rather than guess
            return next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM")), float("nan"))
    except OSError:
        return float("nan")


def load_model_and_tokenizer(name, *, dtype="auto", device=None):
    """Load a causal LM and its tokenizer from a local folder or the hub, in eval mode.

    Raises ModelLoadError with one actionable sentence instead of a long traceback.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    name = resolve_model_name(name)
    auto_device, torch_dtype = pick_device_dtype(dtype)
    device = torch.device(device) if device else auto_device
    if not os.path.exists(name) and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise ModelLoadError(f"model folder {name!r} does not exist; check the path")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype).to(device)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, a truncated safetensors file (SafetensorError), ...
        where = "folder" if os.path.exists(name) else "hub model"
        detail = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}" if str(e) else type(e).__name__
        raise ModelLoadError(
            f"could not load {where} {name!r} ({detail}); give a local folder saved with "
            f"save_pretrained, or a hub id with network access (HF_HUB_OFFLINE=1 means no hub)") from None
    if tokenizer.pad_token_id is None:  # many base models ship no pad token: reuse EOS
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
