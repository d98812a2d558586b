"""What the model sees: one problem rendered as a prompt, the instruction exactly once.

Plumbing for rollout.py (`format_prompt` is what `rollout.sample` feeds the model). Through the
tokenizer's chat template when it has one; a plain "Question/Answer" template otherwise. The
instruction goes in once, where the template wants it: Qwen2.5-Math's template already writes it as
its default system message, so the bare problem is sent (as Qwen's own `qwen25-math-cot` evaluation
does); a template that shows a system message gets it as one; any other gets it after the problem.
`end_of_turn_id` finds the token a template writes after an assistant message (Qwen's `<|im_end|>`),
which `rollout.eos_ids` adds to the stop tokens.
"""

from plumbing import data
from plumbing.loading import ModelLoadError

PROMPT_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
PLAIN_TEMPLATE = "Question: {problem}\n{suffix}\nAnswer:"  # for tokenizers without a chat template
_STYLES = {}  # chat template text -> where it wants the instruction (rendering costs ~1 ms)
_PROBE = "What is 1 + 1?"  # a problem for probing templates; it holds no instruction of its own


def format_prompt(tokenizer, problem):
    """The text the model sees for one problem: its chat template if it has one, else PLAIN_TEMPLATE.
    The instruction (PROMPT_SUFFIX) appears exactly once; see `prompt_messages`."""
    messages = prompt_messages(tokenizer, problem)
    if messages is None:
        return PLAIN_TEMPLATE.format(problem=problem, suffix=PROMPT_SUFFIX)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_messages(tokenizer, problem):
    """The chat messages for one problem, or None for a tokenizer without a chat template.

    The instruction goes in once, where the template wants it: Qwen2.5-Math's template already
    writes it as its default system message, so the bare problem is sent (as Qwen's own
    `qwen25-math-cot` evaluation does); a template that shows a system message gets it as one;
    any other gets it after the problem in the user message."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    return _messages(_instruction_style(tokenizer), problem)


def _messages(style, problem):  # the messages of one instruction style (see `prompt_messages`)
    if style == "default_system":
        return [{"role": "user", "content": problem}]
    if style == "system":
        return [{"role": "system", "content": PROMPT_SUFFIX}, {"role": "user", "content": problem}]
    return [{"role": "user", "content": f"{problem}\n{PROMPT_SUFFIX}"}]


def _instruction_style(tokenizer):
    """Where the instruction goes for this chat template: "default_system", "system" or "user"
    (the first that renders it exactly once); ModelLoadError when none does."""
    key = repr(tokenizer.chat_template)  # a str, or a dict of named templates
    if key not in _STYLES:
        def once(messages):  # a template may refuse a role (a jinja error) or drop it silently
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # noqa: BLE001 - jinja2.TemplateError and whatever a template raises
                return False
            return isinstance(text, str) and text.count(PROMPT_SUFFIX) == 1
        styles = ("default_system", "system", "user")
        style = next((name for name in styles if once(_messages(name, _PROBE))), None)
        if style is None:
            raise ModelLoadError("the tokenizer's chat template renders neither a user message nor a system "
                                 "and a user message; give a tokenizer whose template takes them")
        _STYLES[key] = style
    return _STYLES[key]


def end_of_turn_id(tokenizer):
    """The special token a chat template writes right after an assistant message (Qwen's
    `<|im_end|>`), or None without a template or when that is not one special token."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "END_OF_TURN_PROBE"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": _PROBE}, {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render this conversation
        return None
    after = text[text.rfind(marker) + len(marker):] if marker in text else ""
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    special = set(tokenizer.all_special_ids) | {i for i, t in getattr(tokenizer, "added_tokens_decoder",
                                                                      {}).items() if t.special}
    return ids[0] if ids and ids[0] in special else None


def drop_long_prompts(problems, tokenizer, max_tokens, flag="--max-prompt-tokens"):
    """(problems whose rendered prompt fits `max_tokens`, how many were dropped). A problem longer
    than data.prompt_char_bound characters cannot fit and is dropped before it is tokenized;
    `flag` names the setting in the error raised when none is left."""
    max_chars = data.prompt_char_bound(tokenizer, max_tokens)
    kept = [p for p in problems if len(p["problem"]) <= max_chars
            and len(tokenizer(format_prompt(tokenizer, p["problem"]))["input_ids"]) <= max_tokens]
    if not kept:
        raise data.DataError(f"every prompt is longer than {flag} {max_tokens}")
    return kept, len(problems) - len(kept)
