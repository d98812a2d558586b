"""APOTrainer (multi_gpu_and_dev/trl_apo.py): APO inside TRL's GRPOTrainer, on CPU with the tiny Qwen2 model.

Each test checks one property against an independent reference: a plain full-vocabulary log_softmax of a
freshly loaded model, and `apo.policy_loss` called directly. Skipped when TRL is not installed.
"""

import math

import pytest
import torch

pytest.importorskip("trl", reason="TRL is not installed: pip install -r requirements-trl.txt (.ci/run does)")

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

import apo  # noqa: E402
import rollout  # noqa: E402
from multi_gpu_and_dev.trl_apo import APOConfig, APOTrainer, prompt_column  # noqa: E402
from plumbing import prompts  # noqa: E402
from toy.random_qwen2 import TOY_PROBLEMS  # noqa: E402

G = 4  # completions per prompt
T_MAX = 8  # max_completion_length: keeps every step well under a second on CPU
TEMP = 0.7  # not 1, so a missing temperature scaling would show
K = 3  # reference top-K; not the default 8, so the setting must reach the loss
KL_COEF = 0.5  # large, so the KL kinds' term moves the gradient visibly
ADV = torch.tensor([1.5, -0.5, -0.5, -0.5, 0.8, -1.2, 0.4, 0.0])  # (8,) mixed signs and a zero
IS_WEIGHT = torch.tensor([1.0, 0.5, 2.0, 0.0, 1.0, 1.5, 0.7, 1.0])[:, None]  # (8, 1) vLLM's sequence-level
LENGTHS = [8, 3, 6, 1, 8, 4, 2, 7]  # completion tokens, EOS included; 8 = truncated (no EOS)
GREEDY_ROWS = [2, 4, 5]  # completions that follow the reference's top-1, so y_t is often one of the anchors


def first_of_group_reward(completions, **kwargs):
    """1 for the first completion of each group, 0 for the rest: every group is mixed whatever the random
    model writes, so advantages are never all 0 and the negative-advantage (APO) path always runs."""
    return [float(i % G == 0) for i in range(len(completions))]


def make_config(output_dir, **overrides):
    settings = dict(output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=2 * G,
                    num_generations=G, max_completion_length=T_MAX, temperature=TEMP, apo_top_k=K,
                    apo_kl_coef=KL_COEF, epsilon=0.2, epsilon_high=0.28, learning_rate=1e-3, logging_steps=1,
                    report_to="none", use_cpu=True, bf16=False, activation_checkpointing=False,
                    save_strategy="no", seed=0)
    return APOConfig(**(settings | overrides))


def make_trainer(model_dir, output_dir, **overrides):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = Dataset.from_list([{"prompt": prompt_column(tokenizer, p["problem"]), "answer": p["answer"]}
                              for p in TOY_PROBLEMS])
    args = make_config(output_dir, **overrides)
    return APOTrainer(model=model_dir, reward_funcs=first_of_group_reward, args=args, train_dataset=data,
                      processing_class=tokenizer)


def naive_logp(model, batch):
    """(n, T, V) float32 log pi over the whole vocabulary, from one plain forward of the full sequences."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)  # (n, P+T)
    attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)  # (n, P+T)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(-1) - 1).clamp_min(0)).logits
    P = batch["prompt_ids"].shape[1]
    return torch.log_softmax(logits[:, P - 1:-1].float() / TEMP, -1)  # column j predicts token j+1


def fixed_batch(tokenizer, vocab_size, greedy_model=None):
    """Two prompts of different lengths (left padding) x G random completions of lengths LENGTHS; with
    `greedy_model`, the GREEDY_ROWS take that model's most likely token at every position instead."""
    texts = [prompts.format_prompt(tokenizer, TOY_PROBLEMS[i]["problem"]) for i in (0, 12)]
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    eos = tokenizer.eos_token_id
    ids = torch.randint(0, vocab_size, (2 * G, T_MAX), generator=torch.Generator().manual_seed(0))  # (8, T)
    ids[ids == eos] = eos + 1  # EOS only where LENGTHS puts it
    mask = torch.zeros(2 * G, T_MAX, dtype=torch.long)  # (8, T)
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = 1
        if n < T_MAX:
            ids[i, n - 1:] = eos  # EOS, then padding (pad == EOS)
    batch = {"prompt_ids": enc["input_ids"].repeat_interleave(G, 0), "completion_ids": ids,
             "prompt_mask": enc["attention_mask"].repeat_interleave(G, 0), "completion_mask": mask}
    for t in range(T_MAX if greedy_model is not None else 0):  # one token a pass: position t sees t-1
        with torch.no_grad():
            top1 = naive_logp(greedy_model, batch)[:, t].argmax(-1)  # (8,)
        for i in GREEDY_ROWS:
            if t < LENGTHS[i] - 1 or LENGTHS[i] == T_MAX:  # keep the EOS where LENGTHS puts it
                ids[i, t] = top1[i]
    return batch


@pytest.fixture(scope="module")
def trained_apo(random_model_dir, tmp_path_factory):
    """An APOTrainer (apo_loss='apo') after two training steps, and the policy's weights before them."""
    trainer = make_trainer(random_model_dir, tmp_path_factory.mktemp("apo"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    return trainer, before


def test_two_apo_steps_train_the_policy_and_log_anchor_metrics(trained_apo):
    trainer, before = trained_apo
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert trainer.state.global_step == 2 and len(logs) == 2
    for h in logs:
        assert math.isfinite(h["r_anchor"]) and h["r_anchor"] > 0
        assert 0 < h["safe_mass"] <= 1 + 1e-6 and 0 <= h["clip_frac"] <= 1
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_two_grpo_steps_train_without_a_reference_model(random_model_dir, tmp_path):
    trainer = make_trainer(random_model_dir, tmp_path, apo_loss="grpo")
    assert trainer.apo_ref_model is None
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert trainer.state.global_step == 2 and len(logs) == 2
    assert all("clip_frac" in h and "r_anchor" not in h for h in logs)


def test_reference_model_stays_frozen(trained_apo, random_model_dir):
    trainer, _ = trained_apo
    ref = trainer.apo_ref_model
    initial = AutoModelForCausalLM.from_pretrained(random_model_dir).state_dict()
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    assert all(torch.equal(v, initial[k]) for k, v in ref.state_dict().items())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in ref.parameters()}


def test_generation_step_stores_the_reference_top_k(trained_apo, random_model_dir):
    trainer, _ = trained_apo
    rows = [trainer.train_dataset[i] for i in (0, 1) for _ in range(G)]  # as TRL's sampler repeats prompts
    trainer.model.train()
    out = trainer._generate_and_score_completions(rows)
    with torch.no_grad():
        lp = naive_logp(AutoModelForCausalLM.from_pretrained(random_model_dir), out)  # (n, T, V) initial
    ref_topk_logp, topk_ids = lp.topk(K, -1)  # (n, T, K)
    m = out["completion_mask"].bool()  # (n, T)
    assert torch.equal(out["topk_ids"][m], topk_ids[m])
    assert torch.allclose(out["ref_topk_logp"][m], ref_topk_logp[m], atol=1e-5)
    ref_logp = lp.gather(-1, out["completion_ids"][..., None]).squeeze(-1)  # (n, T)
    assert torch.allclose(out["ref_logp"][m], ref_logp[m], atol=1e-5)


def test_trl_old_logps_equal_ours(trained_apo):
    """With num_iterations > 1 pi_old comes from TRL's fused kernel: it must be our log pi, or the ratio
    of the first pass would not be 1."""
    trainer, _ = trained_apo
    batch = fixed_batch(trainer.processing_class, trainer.model.config.vocab_size)
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    with torch.no_grad():
        theirs, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, attn, T_MAX)
        ours, _, _ = rollout.policy_logps(trainer.model, ids, attn, batch["completion_ids"], temperature=TEMP)
    m = batch["completion_mask"].bool()
    assert torch.allclose(theirs[m], ours[m], atol=1e-5)


# kind, TRL loss_type, the aggregation it must map to, pi_old given by TRL?, gradient accumulation steps,
# micro-batches per generation batch (TRL's steps_per_generation; None: = accumulation steps)
LOSS_CASES = [("apo", "dapo", "token_mean", True, 2, 4), ("grpo", "grpo", "seq_mean", False, 1, None),
              ("grpo_kl", "dr_grpo", "constant", True, 1, None),
              ("kl_on_wrong", "bnpo", "token_mean", False, 2, None)]


@pytest.mark.parametrize("kind,loss_type,agg,with_old,ga,spg", LOSS_CASES)
def test_loss_and_gradient_equal_apo_policy_loss(random_model_dir, tmp_path, kind, loss_type, agg, with_old,
                                                  ga, spg):
    """One micro-batch of a step of `ga`: its loss must be 1/ga of apo.policy_loss on it, gradient included.
    With `with_old` the batch looks like a vLLM one: pi_old is the initial policy, so the ratio is not 1 and
    both clip bounds (epsilon, epsilon_high) are at work, and each completion has an importance weight
    w >= 0, which must scale its surrogate: w * -min(r*A, clip(r)*A) = -min(r*(w*A), clip(r)*(w*A))."""
    trainer = make_trainer(random_model_dir, tmp_path, apo_loss=kind, loss_type=loss_type,
                           gradient_accumulation_steps=ga, steps_per_generation=spg)
    model = trainer.model.train()
    torch.manual_seed(0)
    with torch.no_grad():  # move the policy off the reference, so the KL and anchor terms are not at rest
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    reference = AutoModelForCausalLM.from_pretrained(random_model_dir)  # the initial policy
    batch = fixed_batch(trainer.processing_class, model.config.vocab_size, greedy_model=reference)
    y, mask = batch["completion_ids"], batch["completion_mask"]  # (n, T) each
    with torch.no_grad():
        ref_lp = naive_logp(reference, batch)  # (n, T, V)
    ref_topk_logp, topk_ids = ref_lp.topk(K, -1)  # (n, T, K)
    ref_logp = ref_lp.gather(-1, y[..., None]).squeeze(-1)  # (n, T)
    micro_batches = trainer.args.steps_per_generation  # TRL counts the tokens of the whole generation batch
    inputs = batch | {"advantages": ADV, "num_items_in_batch": micro_batches * mask.sum(),
                      "ref_logp": ref_logp, "topk_ids": topk_ids, "ref_topk_logp": ref_topk_logp}
    if with_old:
        inputs |= {"old_per_token_logps": ref_logp, "importance_sampling_ratio": IS_WEIGHT}

    loss = trainer.compute_loss(model, inputs)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    lp = naive_logp(model, batch)  # (n, T, V) with grad
    logp = lp.gather(-1, y[..., None]).squeeze(-1)  # (n, T)
    expected, metrics = apo.policy_loss(
        logp, ref_logp if with_old else logp.detach(), ADV * IS_WEIGHT[:, 0] if with_old else ADV, mask, kind,
        ref_logp=ref_logp,
        topk_logp=lp.gather(-1, topk_ids), ref_topk_logp=ref_topk_logp,
        topk_is_sampled=topk_ids == y[..., None], beta=0.1, lam=1.05, kl_coef=KL_COEF, clip_low=0.2,
        clip_high=0.28, agg=agg, max_len=T_MAX)
    (expected / ga).backward()
    assert torch.allclose(loss, expected / ga, rtol=1e-5, atol=1e-7)
    for g, p in zip(grads, model.parameters()):
        assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-6)
    assert trainer._metrics["train"]["clip_frac"][-1] == pytest.approx(metrics["clip_frac"])
    assert metrics["clip_frac"] > 0 or not with_old  # with pi_old != pi_theta the clip is really at work
    assert (topk_ids == y[..., None]).any(-1)[mask.bool()].float().mean() > 0.2  # anchors exclude y_t
    if kind == "apo":
        assert trainer._metrics["train"]["r_anchor"][-1] == pytest.approx(metrics["r_anchor"], rel=1e-5)
        assert trainer._metrics["train"]["safe_mass"][-1] == pytest.approx(metrics["safe_mass"], rel=1e-5)


@pytest.mark.parametrize("overrides,match", [
    ({"loss_type": "cispo"}, "loss_type"), ({"beta": 0.04}, "beta=0"), ({"apo_loss": "ppo"}, "apo_loss"),
    ({"importance_sampling_level": "sequence"}, "importance_sampling_level")])
def test_config_rejects_what_apo_policy_loss_cannot_compute(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        make_config(tmp_path, **overrides)


def test_first_pass_ratio_is_exactly_1_under_bf16(random_model_dir, tmp_path, monkeypatch):
    """pi_old (TRL's old_per_token_logps, num_iterations=2) and pi_theta come from one function, so under
    bf16 autocast the ratio of a generation batch's first pass is exactly 1 (TRL's own forward has no
    position ids and left it anywhere in [0.98, 1.013])."""
    seen = []
    real = apo.policy_loss

    def spy(logp, old_logp, *args, **kwargs):
        mask = args[1].bool()  # (n, T)
        seen.append((logp.detach() - old_logp)[mask].abs().max().item())
        return real(logp, old_logp, *args, **kwargs)

    monkeypatch.setattr(apo, "policy_loss", spy)  # the module object trl_apo calls through
    trainer = make_trainer(random_model_dir, tmp_path, bf16=True, num_iterations=2, max_steps=2)
    trainer.train()
    assert len(seen) == 2 and seen[0] == 0.0  # first pass: exactly 1; the second reuses the batch
    assert seen[1] > 0  # after one update the same samples are off-policy: the test can see a difference


def test_trl_sees_our_prompt_and_stops_where_train_py_stops(tmp_path):
    """On a tokenizer with Qwen2.5-Math-1.5B's chat template and a model that lists only <|endoftext|>:
    TRL renders the very prompt prompts.format_prompt makes, and <|im_end|> ends its completions too."""
    from pathlib import Path

    from toy import random_qwen2
    template = (Path(__file__).parent / "data" / "qwen2.5-math-1.5b.chat_template.jinja").read_text()
    tok = random_qwen2.train_tokenizer(random_qwen2.CORPUS, random_qwen2.BPE_VOCAB, chat_template=template)
    model_dir = random_qwen2.save(tmp_path / "model", random_qwen2.qwen2_model(tok, hidden=32, layers=2,
                                                                             heads=4), tok)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    messages = prompt_column(tokenizer, "What is 2 + 3?")
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) \
        == prompts.format_prompt(tokenizer, "What is 2 + 3?")
    trainer = make_trainer(model_dir, tmp_path / "out", apo_loss="grpo")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end not in [trainer.model.generation_config.eos_token_id]  # the case under test
    assert sorted(trainer.eos_token_ids) == sorted(trainer.generation_config.eos_token_id) \
        == rollout.eos_ids(trainer.model, tokenizer) == sorted({tokenizer.eos_token_id, im_end})
