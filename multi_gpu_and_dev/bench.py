"""Speed and memory of one training step: ours (GRPO and APO) against TRL's GRPOTrainer.

    python multi_gpu_and_dev/bench.py                       # a small random Qwen2 on CPU, ~2 minutes
    python multi_gpu_and_dev/bench.py --shape qwen2.5-1.5b --json bench_gpu.json  # on a GPU (no download)

What it measures, each in a fresh process so that peaks do not leak between runs:
- ours: `train.py` itself, for --loss grpo and --loss apo on the same random-weight model,
  prompts and settings. train.py logs per-step phase times (generation, rewards, reference
  forward, loss forward+backward, optimizer) and peak memory; we report medians over the
  steps after the warm-up ones. Completions of a random model almost never end early, so
  every step generates exactly N x max_new_tokens tokens: timings compare like with like.
- TRL: the same model, prompts, G, completions per step, completion length, one update per
  generation, no KL (beta = 0), timed per optimizer step by a callback. Skipped with a
  message when TRL is not installed (pip install -r requirements-trl.txt).
- the log-prob path alone: log pi of the sampled tokens, forward and backward, from the same
  bf16 hidden states and LM head at V = 151,936 (bf16 is what the LM head produces under GPU
  autocast; the CPU run uses it too so that both measure the same thing): a naive float32
  `log_softmax` over (N, T, V) against `apo.gather_logp` (gather the logit, subtract a
  logsumexp; hand-written backward).

Peak memory: `torch.cuda.max_memory_allocated` on a GPU; on CPU the process's peak resident
set (VmHWM), for the log-prob test counted above the memory in use before it starts.

Departures: the model has random weights shaped like Qwen2.5-Math-1.5B (no weights can be
downloaded on our CI); its tokenizer is a small BPE, so decoded text is gibberish and every
reward is 0 — irrelevant to timing, since every token still goes through every computation.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root
if ROOT not in sys.path:  # `python multi_gpu_and_dev/bench.py`: the repository root is not on the path
    sys.path.insert(0, ROOT)
from plumbing import loading, prompts  # noqa: E402

QWEN_VOCAB = 151_936  # Qwen2.5's embedding rows
SHAPES = {  # toy.random_qwen2.qwen2_model arguments; qwen2.5-1.5b copies Qwen2.5-Math-1.5B's config.json
    "small": dict(hidden=128, intermediate=512, layers=2, heads=4, kv_heads=2, vocab_size=8192,
                  max_positions=4096),  # CPU-sized
    "qwen2.5-1.5b": dict(hidden=1536, intermediate=8960, layers=28, heads=12, kv_heads=2,
                         vocab_size=QWEN_VOCAB, max_positions=4096, rope_theta=10000.0),
}
DEFAULTS = {  # per shape: prompts B, group G, completion tokens T, steps timed, micro-batch, logprob N x T
    "small": dict(prompts=2, group=8, tokens=64, steps=8, micro=8, lp_rows=4, lp_tokens=256,
                  sampler_batches=(16,), sampler_tokens=64),
    "qwen2.5-1.5b": dict(prompts=8, group=8, tokens=512, steps=2, micro=8, lp_rows=16, lp_tokens=1024,
                         sampler_batches=(128, 256), sampler_tokens=256),
}
WARMUP_STEPS = 1  # first step pays for allocation, kernel selection and graph capture
PARTS = ("sampler", "ours", "recipe", "logprob", "trl")  # most telling first: a run cut short still reports
LOSSES = ("grpo", "grpo_kl", "apo")  # grpo_kl and apo both load the reference: their ratio is APO's own cost


def build_model(path, shape):
    """A random-weight Qwen2 model of `shape` with a small BPE tokenizer, saved to `path`."""
    from toy import random_qwen2
    corpus = [f"Question: What is {a} + {b}?\nAnswer: {a + b}" for a in range(30) for b in range(30)]
    tok = random_qwen2.train_tokenizer(corpus, 400, max_positions=SHAPES[shape]["max_positions"])
    model = random_qwen2.qwen2_model(tok, **SHAPES[shape])
    random_qwen2.save(path, model, tok)
    return sum(p.numel() for p in model.parameters())


def write_prompts(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"problem": f"What is {i} + {2 * i + 1}?", "answer": str(3 * i + 1)}) + "\n")


def run_ours(loss, model_dir, data_file, out, s, sampler):
    """train.py in a subprocess; returns medians over the timed steps."""
    steps = WARMUP_STEPS + s["steps"]
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--model", model_dir, "--dataset", data_file,
           "--loss", loss, "--steps", str(steps), "--prompts-per-step", str(s["prompts"]),
           "--group-size", str(s["group"]), "--max-new-tokens", str(s["tokens"]),
           "--micro-batch-size", str(s["micro"]), "--gen-batch-size", str(s["prompts"] * s["group"]),
           "--save-every", "0", "--out", out, "--sampler", sampler, "--lr", "1e-6"]
    p = _train(cmd)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f][WARMUP_STEPS:]
    med = {k: statistics.median(r[k] for r in rows) for k in
           ("seconds", "gen_seconds", "ref_seconds", "loss_seconds", "opt_seconds", "gen_tokens_per_s")}
    return {"step_s": med["seconds"], "gen_s": med["gen_seconds"], "ref_s": med["ref_seconds"],
            "loss_s": med["loss_seconds"], "opt_s": med["opt_seconds"], "tok_per_s": med["gen_tokens_per_s"],
            "peak_mb": max(r["peak_mb"] for r in rows), "sampler_fell_back": _fell_back(p)}


def _train(cmd):
    """train.py in a subprocess; its error output in the exception when it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"train.py exited {p.returncode}:\n{p.stderr[-3000:]}")
    return p


def _fell_back(p):
    """Did rollout.sample fall back from the static sampler to generate in this run?"""
    return "static sampler" in p.stdout + p.stderr


def run_default_recipe(model_dir, data_file, out):
    """One step of `python train.py` with every default but the data, the model and no checkpoint;
    returns its phase times, peak memory and the memory-estimate line train.py printed."""
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--model", model_dir, "--dataset", data_file,
           "--steps", "1", "--save-every", "0", "--out", out]
    p = _train(cmd)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        m = json.loads(f.readline())
    estimate = next((line for line in p.stdout.splitlines() if line.startswith("memory estimate")), "")
    return {"step_s": m["seconds"], "gen_s": m["gen_seconds"], "ref_s": m["ref_seconds"],
            "loss_s": m["loss_seconds"], "opt_s": m["opt_seconds"], "peak_mb": m["peak_mb"],
            "tokens": round(m["gen_tokens_per_s"] * m["gen_seconds"]), "estimate": estimate,
            "sampler_fell_back": _fell_back(p)}


def trl_worker(model_dir, data_file, s):
    """One TRL GRPOTrainer run with settings matched to ours; prints a JSON line."""
    from datasets import load_dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    cuda = torch.cuda.is_available()
    ds = load_dataset("json", data_files=data_file, split="train").rename_column("problem", "prompt")
    n = s["prompts"] * s["group"]
    steps = WARMUP_STEPS + s["steps"]
    args = GRPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=n,
                      num_generations=s["group"],
                      gradient_accumulation_steps=1, max_completion_length=s["tokens"], max_steps=steps,
                      learning_rate=1e-6, beta=0.0, num_iterations=1, loss_type="dapo", logging_steps=1,
                      report_to="none", save_strategy="no", bf16=cuda, use_cpu=not cuda, temperature=1.0,
                      top_k=0, seed=0)
    times = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            self.t = time.time()

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.time() - self.t)

    trainer = GRPOTrainer(model=model_dir, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                          args=args, train_dataset=ds, callbacks=[Timer()])
    trainer.train()
    device = torch.device("cuda" if cuda else "cpu")
    print(json.dumps({"step_s": statistics.median(times[WARMUP_STEPS:]),
                      "peak_mb": loading.peak_memory_mb(device)}))


def logprob_worker(mode, rows, tokens, hidden):
    """Peak memory of log pi(y_t) for (rows, tokens) positions, forward + backward; prints JSON."""
    import apo
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16  # the logits' dtype in GPU training (bf16 autocast), on CPU too
    torch.manual_seed(0)
    h = torch.randn(rows, tokens, hidden, device=device, dtype=dtype, requires_grad=True)  # hidden states
    w = (torch.randn(QWEN_VOCAB, hidden, device=device, dtype=dtype) * 0.02).requires_grad_(True)
    y = torch.randint(QWEN_VOCAB, (rows, tokens, 1), device=device)  # the sampled tokens
    before = _memory_now(device)
    t0 = time.time()
    logits = h @ w.T  # (N, T, V) in the model dtype, as the LM head makes them
    if mode == "naive":
        logp = torch.log_softmax(logits.float(), -1).gather(-1, y)  # (N, T, 1) float32 (N, T, V) twice
    else:
        logp = apo.gather_logp(logits, y)  # (N, T, 1), no float32 (N, T, V) kept
    del logits
    logp.sum().backward()
    if cuda:
        torch.cuda.synchronize()
    print(json.dumps({"peak_mb": _peak(device) - before, "seconds": time.time() - t0,
                      "logp_sum": logp.sum().item()}))


def sampler_worker(model_dir, batch, tokens):
    """Decode tokens/s of plain `generate` and of fast_sampler's static-cache sampler; prints JSON."""
    import rollout
    from plumbing import fast_sampler
    cuda = torch.cuda.is_available()
    model, tok = loading.load_model_and_tokenizer(model_dir, dtype="bfloat16" if cuda else "float32")
    prompt = prompts.format_prompt(tok, "What is 12 + 30?")
    enc = tok([prompt] * batch, return_tensors="pt", add_special_tokens=False).to(model.device)
    cfg = rollout.sampling_config(model, tok, max_new_tokens=tokens)
    cfg.eos_token_id = [-1]  # nothing stops early: every run decodes exactly `tokens` steps
    out = {}
    for name in ("hf", "static"):
        for attempt in range(2):  # the first call warms up (and captures the CUDA graph)
            if cuda:
                torch.cuda.synchronize()
            t0 = time.time()
            if name == "hf":
                ids = model.generate(**enc, generation_config=cfg)[:, enc["input_ids"].shape[1]:]
            else:
                ids = fast_sampler.static_generate(model, enc["input_ids"], enc["attention_mask"], cfg)
            if cuda:
                torch.cuda.synchronize()
            seconds = time.time() - t0
        out[name] = {"tok_per_s": ids.numel() / seconds, "ms_per_step": 1000 * seconds / ids.shape[1]}
    out["speedup"] = out["static"]["tok_per_s"] / out["hf"]["tok_per_s"]
    print(json.dumps(out))


def _memory_now(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current resident set
        f.write("5")
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


def _peak(device):
    return loading.peak_memory_mb(device)


def _worker_json(args, timeout=None):
    p = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"bench worker {args[:2]} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _part(name, fn):
    """Run one measurement; a failure is printed and recorded, and the other parts still run
    (on a lent GPU, partial results beat none)."""
    t0 = time.time()
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - subprocess errors, timeouts, a missing package
        detail = "\n  ".join(str(e).strip().splitlines()[-8:])
        print(f"{name}: FAILED after {time.time() - t0:.0f} s: {type(e).__name__}: {detail}", flush=True)
        return {"error": f"{type(e).__name__}: {e}"[-2000:]}
    print(f"{name}: done in {time.time() - t0:.0f} s: {json.dumps(result)}", flush=True)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description="Time and size one training step: ours vs TRL.")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small", help="model shape (random weights)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps after 1 warm-up step")
    ap.add_argument("--tokens", type=int, default=None, help="completion length T")
    ap.add_argument("--lp-tokens", type=int, default=None, help="tokens per row in the log-prob test")
    ap.add_argument("--sampler", default="auto", choices=["auto", "hf", "static"], help="our sampler")
    ap.add_argument("--no-trl", action="store_true", help="skip the TRL comparison")
    ap.add_argument("--default-recipe", action="store_true",
                    help="also one step of train.py's default recipe (16 x 8 completions, up to 3000 tokens)")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help=f"comma-separated parts to run, in this order: {','.join(PARTS)} "
                         "(recipe only with --default-recipe)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)  # internal: one measurement
    args = ap.parse_args(argv)
    parts = args.parts.split(",")
    if not set(parts) <= set(PARTS):
        ap.error(f"--parts takes names from {', '.join(PARTS)}, got {args.parts!r}")
    s = dict(DEFAULTS[args.shape])
    overrides = (("steps", args.steps), ("tokens", args.tokens), ("lp_tokens", args.lp_tokens))
    s.update({k: v for k, v in overrides if v is not None})
    if args.worker:
        kind, *rest = args.worker
        if kind == "trl":
            return trl_worker(rest[0], rest[1], s)
        if kind == "sampler":
            return sampler_worker(rest[0], int(rest[1]), s["sampler_tokens"])
        return logprob_worker(rest[0], s["lp_rows"], s["lp_tokens"], SHAPES[args.shape]["hidden"])

    device = "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"bench: {args.shape} on {device}; B={s['prompts']} G={s['group']} T={s['tokens']}, "
          f"median of {s['steps']} steps after {WARMUP_STEPS} warm-up")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, data_file = os.path.join(tmp, "model"), os.path.join(tmp, "prompts.jsonl")
        params = build_model(model_dir, args.shape)
        write_prompts(data_file, 64)
        print(f"model: {params:,} parameters, built in {time.time() - t0:.0f} s", flush=True)
        common = ["--shape", args.shape, "--steps", str(s["steps"]), "--tokens", str(s["tokens"]),
                  "--lp-tokens", str(s["lp_tokens"])]  # workers see the same settings
        # each part prints when it ends, so a run cut short still reports what it measured
        sampler = {b: _part(f"sampler batch {b}", lambda b=b: _worker_json(
            common + ["--worker", "sampler", model_dir, str(b)]))
            for b in s["sampler_batches"] if "sampler" in parts}
        ours = {loss: _part(f"ours {loss}", lambda loss=loss: run_ours(
            loss, model_dir, data_file, os.path.join(tmp, loss), s, args.sampler))
            for loss in LOSSES if "ours" in parts}
        recipe = None
        if args.default_recipe and "recipe" in parts:
            recipe = _part("default recipe", lambda: run_default_recipe(
                model_dir, data_file, os.path.join(tmp, "recipe")))
        shape_args = common + ["--worker", "logprob"]
        logprob = {f"{mode}_mb": _part(f"log-prob {mode}", lambda mode=mode: _worker_json(
            shape_args + [mode])).get("peak_mb", float("nan"))
            for mode in ("naive", "lean") if "logprob" in parts}
        trl_result = None
        if "trl" not in parts:
            pass
        elif args.no_trl:
            print("trl: skipped (--no-trl)")
        else:
            try:
                import trl  # noqa: F401  (only to know whether it is installed)
                trl_result = _part("trl grpo", lambda: _worker_json(
                    common + ["--worker", "trl", model_dir, data_file]))
            except ImportError:
                print("trl: skipped: TRL is not installed (pip install -r requirements-trl.txt)")
    result = {"device": device, "shape": args.shape, "params": params, "settings": s, "ours": ours,
              "trl": trl_result, "sampler": sampler, "logprob_peak": logprob, "default_recipe": recipe,
              "seconds": time.time() - t0}
    print_report(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def print_report(r):
    cols = ("step s", "gen s", "ref s", "loss s", "opt s", "tok/s", "peak MB")
    print(f"\n{'run':<10}" + "".join(f"{c:>9}" for c in cols))
    ok = {name: m for name, m in r["ours"].items() if "error" not in m}
    for name, m in ok.items():
        vals = [m[k] for k in ("step_s", "gen_s", "ref_s", "loss_s", "opt_s")]
        print(f"{name:<10}" + "".join(f"{v:>9.2f}" for v in vals)
              + f"{m['tok_per_s']:>9.0f}{m['peak_mb']:>9.0f}")
    if r["trl"] and "error" not in r["trl"]:
        print(f"{'trl grpo':<10}{r['trl']['step_s']:>9.2f}{'':>45}{r['trl']['peak_mb']:>9.0f}")
    for base in ("grpo", "grpo_kl"):
        if base not in ok or "apo" not in ok:
            continue
        g, a = ok[base], ok["apo"]
        print(f"apo vs {base}: step time {a['step_s'] / g['step_s'] - 1:+.1%}, peak memory "
              f"{a['peak_mb'] / g['peak_mb'] - 1:+.1%}")
    for batch, sp in r["sampler"].items():
        if "error" in sp:
            continue
        print(f"sampling, batch {batch}: generate {sp['hf']['tok_per_s']:.0f} tok/s "
              f"({sp['hf']['ms_per_step']:.1f} ms/step), static sampler {sp['static']['tok_per_s']:.0f} "
              f"tok/s ({sp['static']['ms_per_step']:.1f} ms/step): {sp['speedup']:.2f}x")
    if r["default_recipe"] and "error" not in r["default_recipe"]:
        d = r["default_recipe"]
        print(f"default recipe, one step: {d['step_s']:.1f} s (gen {d['gen_s']:.1f}, ref {d['ref_s']:.1f}, "
              f"loss {d['loss_s']:.1f}, opt {d['opt_s']:.1f}), {d['tokens']} completion tokens, peak "
              f"{d['peak_mb']:.0f} MB\n  {d['estimate']}")
    lp = r["logprob_peak"]
    if lp:
        print(f"log-prob path, forward+backward at V={QWEN_VOCAB}: naive float32 {lp['naive_mb']:.0f} MB, "
              f"lean {lp['lean_mb']:.0f} MB ({lp['lean_mb'] / lp['naive_mb']:.0%} of naive)")
    print(f"total {r['seconds']:.0f} s")


if __name__ == "__main__":
    main()
