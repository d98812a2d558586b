"""Qwen2.5-Math-1.5B's prompt and stop token, on a tokenizer that carries its public chat template
and special tokens (`<|endoftext|>` is EOS; the model's generation config does not list `<|im_end|>`)."""

import json
from pathlib import Path

import pytest
import torch

import rollout
import verify
from plumbing import loading, prompts
from toy import random_qwen2

TEMPLATE = Path(__file__).parent / "data" / "qwen2.5-math-1.5b.chat_template.jinja"  # tokenizer_config.json's
QWEN_SPECIALS = ["<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
                 "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                 "<|image_pad|>", "<|video_pad|>"]  # Qwen2.5's special tokens after <|im_end|>
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@pytest.fixture(scope="module")
def qwen_math_dir(tmp_path_factory):
    """A random Qwen2 saved with Qwen2.5-Math-1.5B's chat template; generation stops only at EOS."""
    tok = random_qwen2.train_tokenizer(random_qwen2.CORPUS, random_qwen2.BPE_VOCAB,
                                       chat_template=TEMPLATE.read_text(), special_tokens=QWEN_SPECIALS)
    model = random_qwen2.qwen2_model(tok, hidden=32, layers=2, heads=4, intermediate=64)
    return random_qwen2.save(tmp_path_factory.mktemp("qwen_math") / "model", model, tok)


@pytest.fixture(scope="module")
def model_tok(qwen_math_dir):
    model, tok = loading.load_model_and_tokenizer(qwen_math_dir)
    assert json.loads((Path(qwen_math_dir) / "generation_config.json").read_text())["eos_token_id"] \
        == tok.eos_token_id == tok.convert_tokens_to_ids("<|endoftext|>")  # <|im_end|> not listed
    return model, tok


def test_the_prompt_is_qwens_own_cot_prompt(model_tok):
    """The template's default system message already holds the instruction: the bare problem goes
    in, as in Qwen2.5-Math's own evaluation (prompt type qwen25-math-cot)."""
    _, tok = model_tok
    assert prompts.format_prompt(tok, "What is $2 + 3$?") == (
        "<|im_start|>system\n" + INSTRUCTION + "<|im_end|>\n"
        "<|im_start|>user\nWhat is $2 + 3$?<|im_end|>\n"
        "<|im_start|>assistant\n")


@pytest.mark.parametrize("template, where", [
    ("default_system", "system"),  # Qwen2.5-Math: its own default system message
    (random_qwen2.CHAT_TEMPLATE, "system"),  # shows a system message: the instruction goes there
    ("{% for m in messages %}{% if m['role'] != 'system' %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
     "<|im_end|>\n{% endif %}{% endfor %}<|im_start|>assistant\n", "user"),  # drops system messages
    ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
     "[{{ m['content'] }}]{% endfor %}", "user"),  # refuses them
])
def test_the_instruction_appears_exactly_once(model_tok, template, where):
    _, tok = model_tok
    saved = tok.chat_template
    if template != "default_system":
        tok.chat_template = template
    try:
        prompt = prompts.format_prompt(tok, "What is 2 + 3?")
        assert prompt.count(INSTRUCTION) == 1 and prompt.count("What is 2 + 3?") == 1
        if where == "system":
            assert prompt.index(INSTRUCTION) < prompt.index("What is 2 + 3?")
        else:
            assert prompt.index("What is 2 + 3?") < prompt.index(INSTRUCTION)
    finally:
        tok.chat_template = saved


def test_im_end_ends_a_completion(model_tok):
    model, tok = model_tok
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert prompts.end_of_turn_id(tok) == im_end
    assert rollout.eos_ids(model, tok) == sorted({tok.eos_token_id, im_end})
    assert im_end in rollout.sampling_config(model, tok).eos_token_id
    tok_plain = loading.load_model_and_tokenizer(random_qwen2.build_random_qwen2(
        Path(model.name_or_path).parent / "plain", chat_template=False))[1]
    assert prompts.end_of_turn_id(tok_plain) is None  # no template: EOS alone ends a completion


def _memorize(model, tok, prompt, completion_ids, steps=400):
    """Train the random model until greedy decoding after `prompt` writes `completion_ids`."""
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"] + completion_ids])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 1e-3:
            break
    model.eval()
    return loss.item()


def test_nothing_after_im_end_is_sampled_scored_or_graded(qwen_math_dir):
    """A model that answers 4, writes <|im_end|>, then opens a new turn and answers 5 (what a base
    model does without the stop): the completion ends at <|im_end|>, the mask keeps <|im_end|>
    and nothing after it, the log-probs cover exactly those tokens, and the reward grades 4."""
    model, tok = loading.load_model_and_tokenizer(qwen_math_dir)
    prompt = prompts.format_prompt(tok, "What is 2 + 2?")
    answer = tok("The answer is \\boxed{4}.", add_special_tokens=False)["input_ids"]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    more = tok("\n<|im_start|>user\nNo, add one.<|im_end|>\n<|im_start|>assistant\nThen \\boxed{5}.",
               add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    assert _memorize(model, tok, prompt, answer + [im_end] + more + [tok.eos_token_id]) < 1e-2
    torch.manual_seed(0)
    r = rollout.sample(model, tok, ["What is 2 + 2?"], 4, temperature=0.2, max_new_tokens=64)
    n = len(answer) + 1
    assert r.completion_ids.shape[1] == n  # sampling stopped at <|im_end|> in every row
    assert (r.completion_ids == torch.tensor(answer + [im_end])).all()
    assert r.completion_mask.sum(1).tolist() == [n] * 4 and not r.truncated.any()
    assert all("5" not in text and verify.reward(text, "4") == 1.0 for text in r.texts)
    logp, _, _ = rollout.policy_logps(model, r.input_ids, r.attention_mask, r.completion_ids)
    assert logp.shape == (4, n) and (logp[:, -1] > -0.1).all()  # <|im_end|> itself is scored


def test_other_templates_dict_required_system_and_an_added_end_of_turn_token(model_tok):
    """Named templates (a dict), a template that demands a system message, and a Llama-3-style
    end-of-turn token that is an added special token but not a named one."""
    from tokenizers import AddedToken
    _, tok = model_tok
    saved = tok.chat_template
    try:
        tok.chat_template = {"default": random_qwen2.CHAT_TEMPLATE, "tool_use": "{{ messages }}"}
        assert prompts.format_prompt(tok, "What is 2 + 3?").count(INSTRUCTION) == 1
        tok.chat_template = ("{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message "
                             "is required') }}{% endif %}" + random_qwen2.CHAT_TEMPLATE)
        prompt = prompts.format_prompt(tok, "What is 2 + 3?")
        assert prompt.startswith("<|im_start|>system\n" + INSTRUCTION)
        tok.add_tokens([AddedToken("<|eot_id|>", special=True)])
        eot = tok.convert_tokens_to_ids("<|eot_id|>")
        assert eot not in tok.all_special_ids  # the case: not a named special token
        tok.chat_template = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                             "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
                             "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
        assert prompts.end_of_turn_id(tok) == eot
        tok.chat_template = "{{ raise_exception('no') }}"
        with pytest.raises(loading.ModelLoadError, match="chat template renders neither"):
            prompts.format_prompt(tok, "What is 2 + 3?")
    finally:
        tok.chat_template = saved
