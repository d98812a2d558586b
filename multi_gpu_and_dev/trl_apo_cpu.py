"""APO through TRL's GRPOTrainer (multi_gpu_and_dev/trl_apo.py): a CPU smoke run, and the same script on GPUs.

CPU, offline, in seconds (builds toy/random_qwen2.py's random Qwen2, 2 steps on its 16 toy problems):
    python multi_gpu_and_dev/trl_apo_cpu.py --reward has_digit
Several GPUs: the same script under `accelerate launch` with a DeepSpeed config (README, "Beyond one GPU"):
    accelerate launch --config_file multi_gpu_and_dev/zero3.yaml --num_processes 8 \\
        multi_gpu_and_dev/trl_apo_cpu.py \\
        --model Qwen/Qwen2.5-Math-1.5B --dataset DigitalLearningGmbH/MATH-lighteval --bf16 true ...
Every GRPOConfig flag works (`--help` lists them all), plus --apo_loss, --apo_beta, --apo_lam, --apo_top_k and
--apo_kl_coef; the defaults below are the CPU smoke run's, so a real run sets its sizes explicitly.

It loads problems with data.load_problems, gives TRL a `prompt` column that renders to prompts.format_prompt's
text, rewards with verify.reward (trl_apo.math_reward) and trains with trl_apo.APOTrainer. It prints one
fixed-format line per logged step, writes the same metrics to OUTPUT_DIR/metrics.jsonl and the final model to
OUTPUT_DIR/final. Bad input (a flag, the data, an unreadable model) ends with one `error: ...` line and
exit code 2.

Departures from train.py, with reasons:
1. Batching is TRL's: a step is per_device_train_batch_size x processes x gradient_accumulation_steps
   completions, each prompt sampled num_generations times (G); there is no --prompts-per-step.
2. `--reward has_digit` (1 when the completion contains a digit) is not a task: it only gives the random
   model mixed groups, so that advantages are non-zero and the APO metrics move in the smoke run.
3. No held-out evaluation or resume logic of our own: use eval.py on OUTPUT_DIR/final, and TRL's
   `--save_strategy steps --save_steps N` with `--resume_from_checkpoint`.
"""

import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from datasets import Dataset
from safetensors import SafetensorError
from transformers import AutoTokenizer, HfArgumentParser, PrinterCallback, ProgressCallback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python multi_gpu_and_dev/x.py`: put the repository root on the path

from multi_gpu_and_dev.trl_apo import APOConfig, APOTrainer, math_reward, prompt_column  # noqa: E402
from plumbing import checkpoints, cli, data, loading, prompts  # noqa: E402
from toy.random_qwen2 import TOY_PROBLEMS, build_random_qwen2  # noqa: E402

RANDOM_MODEL_SUBDIR = "random-qwen2"  # without --model: built inside --output_dir, so two runs never collide
# The smoke run's sizes; a GPU run overrides them on the command line.
CPU_DEFAULTS = dict(output_dir="runs/trl_apo", max_steps=2, per_device_train_batch_size=8, num_generations=4,
                    max_completion_length=32, logging_steps=1, report_to="none", save_strategy="no",
                    bf16=torch.cuda.is_available(), activation_checkpointing=False)


def _f(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class ScriptArgs:
    model: str = _f("", "local folder or hub id; empty: build the random Qwen2 of toy/random_qwen2.py")
    dataset: str = _f("", "hub id or local .jsonl/.json/.parquet with problem+answer; empty: 16 toy problems")
    split: str = _f("train", "dataset split (hub datasets)")
    levels: str = _f("3,4,5", "keep these MATH levels when the data has a `level` field; '' keeps all")
    limit: int = _f(0, "use the first N problems (0: all)")
    max_prompt_tokens: int = _f(1024, "drop longer prompts (with the completion budget: fits a 4k context)")
    reward: str = _f("math", "math (verify.reward on the final answer) or has_digit (smoke-run plumbing)")


def fail(message):
    """Bad input: one `error: ...` line on stderr and exit code 2, as train.py and eval.py do."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def has_digit_reward(completions, **kwargs):
    """1.0 when the completion contains a digit: a plumbing reward for the random Qwen2
    (trl_apo_cpu.py departure 2)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [float(any(ch.isdigit() for ch in text)) for text in texts]


REWARDS = {"math": math_reward, "has_digit": has_digit_reward}


class StepLine(ProgressCallback):
    """TRL's progress bar, but one fixed-format line per logged step instead of a dict, and metrics.jsonl."""

    def __init__(self, path, kind):
        super().__init__()
        self.path, self.kind = path, kind

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:  # train-step logs only
            return
        # Absent: no generation this step (num_iterations > 1 reuses samples); None: no token to average.
        m = defaultdict(lambda: float("nan"), {k: v for k, v in logs.items() if v is not None})
        extra = {"apo": f"safe {m['safe_mass']:.3f} r_anc {m['r_anchor']:.3f}",
                 "grpo_kl": f"kl {m['kl']:.4f}", "kl_on_wrong": f"kl {m['kl']:.4f}"}
        line = (f"step {state.global_step:>4}/{state.max_steps} | reward {m['reward']:.3f} | zero_std "
                f"{m['frac_reward_zero_std']:.2f} | len {m['completions/mean_length']:6.1f} | trunc "
                f"{m['completions/clipped_ratio']:.2f} | ent {m['entropy']:.3f} | "
                f"clip {m['clip_frac']:.3f} | {extra.get(self.kind, '-')} | loss {m['loss']:+.4f} | "
                f"{m['step_time']:.1f}s")
        (self.training_bar.write if self.training_bar is not None else print)(line)
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def load_dataset_for_trl(script, tokenizer):
    """Problems as a datasets.Dataset with TRL's `prompt` column and our `answer` (read by math_reward)."""
    if script.dataset:
        levels = {int(x) for x in script.levels.split(",") if x.strip()} or None
        problems = data.load_problems(script.dataset, script.split, levels=levels, limit=script.limit or None)
    else:
        problems = TOY_PROBLEMS[:script.limit or None]
    problems, _ = prompts.drop_long_prompts(problems, tokenizer, script.max_prompt_tokens,  # as train.py
                                            flag="--max_prompt_tokens")
    return Dataset.from_list([{"prompt": prompt_column(tokenizer, p["problem"]), "answer": p["answer"]}
                              for p in problems])


def check_args(script, config):
    """Exit 2 with one sentence for a flag no run can use (TRL's own checks ran while parsing)."""
    for args in (script, config):
        bad = cli.non_finite_floats(args)
        if bad:
            fail(f"--{bad[0]} must be a finite number; got {getattr(args, bad[0])}")
    if script.reward not in REWARDS:
        fail(f"--reward must be one of {', '.join(REWARDS)}")
    if script.limit < 0 or script.max_prompt_tokens < 1:
        fail("--limit must be >= 0 (0: all problems) and --max_prompt_tokens >= 1")
    try:
        checkpoints.check_out_dir(config.output_dir, "--output_dir")
    except checkpoints.RunError as e:
        fail(e)


def main(argv=None):
    parser = HfArgumentParser((ScriptArgs, APOConfig))
    parser.set_defaults(**CPU_DEFAULTS)
    try:
        script, config = parser.parse_args_into_dataclasses(argv)
    except ValueError as e:  # APOConfig's and GRPOConfig's checks: one sentence naming the setting
        fail(e)
    check_args(script, config)
    state = PartialState()
    if not script.model:
        random_dir = os.path.join(config.output_dir, RANDOM_MODEL_SUBDIR)
        with state.main_process_first():  # under accelerate launch one process writes it, the others wait
            if state.is_main_process:
                build_random_qwen2(random_dir)
        script.model = random_dir
    model_name = loading.resolve_model_name(script.model)  # a bare Qwen name means Qwen/..., as train.py
    try:  # left padding and pad = EOS when missing, as TRL loads its own processing class
        tokenizer = AutoTokenizer.from_pretrained(model_name, padding_side="left", truncation_side="left")
        dataset = load_dataset_for_trl(script, tokenizer)
    except (OSError, ValueError) as e:  # data.DataError is a ValueError
        fail(e)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    os.makedirs(config.output_dir, exist_ok=True)
    metrics_path = os.path.join(config.output_dir, "metrics.jsonl")
    if state.is_main_process and os.path.exists(metrics_path):
        os.remove(metrics_path)  # this run's lines only, as train.py does without --resume

    try:  # TRL loads the policy (and the reference) itself: a truncated or corrupt weights file fails here
        trainer = APOTrainer(model=model_name, reward_funcs=REWARDS[script.reward], args=config,
                             train_dataset=dataset, processing_class=tokenizer)
    except (OSError, ValueError, SafetensorError) as e:
        fail(f"could not load the model {model_name!r} ({type(e).__name__}: {str(e)[:120]}); give a folder "
             "saved with save_pretrained, or a hub id with network access")
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StepLine(metrics_path, config.apo_loss))
    processes = trainer.accelerator.num_processes
    per_step = config.per_device_train_batch_size * processes * config.gradient_accumulation_steps
    if state.is_main_process:  # the derived sizes, printed once
        print(f"config: model={model_name} problems={len(dataset)} apo_loss={config.apo_loss} "
              f"loss_type={config.loss_type} G={config.num_generations} processes={processes} "
              f"completions/step={per_step} max_completion_length={config.max_completion_length} "
              f"temperature={config.temperature} device={trainer.accelerator.device}")
    result = trainer.train()
    trainer.save_model(os.path.join(config.output_dir, "final"))
    if state.is_main_process:
        print(f"trained {result.global_step} steps in {result.metrics['train_runtime']:.1f}s; "
              f"saved {os.path.join(config.output_dir, 'final')}")


if __name__ == "__main__":
    main()
