"""Prompts in the model's own chat template, with thinking on or off.

Think off uses the template's ``enable_thinking`` switch where the template
has one (Qwen3); otherwise the assistant turn is opened with an empty
``<think>\\n\\n</think>\\n\\n`` block, the convention DeepSeek-R1-style models
follow (the README's `think on|off`).
"""

from __future__ import annotations

DEFAULT_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
EMPTY_THINK = "<think>\n\n</think>\n\n"


def _messages(problem: str, system: str | None, instruction: str | None) -> list[dict]:
    user = problem if not instruction else f"{problem}\n{instruction}"
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}]


def render_prompt(tokenizer, problem: str, think: bool = True, system: str | None = None,
                  instruction: str | None = DEFAULT_INSTRUCTION) -> str:
    """The exact text given to the model for ``problem`` (stored verbatim in samples.prompt)."""
    msgs = _messages(problem, system, instruction)
    if not getattr(tokenizer, "chat_template", None):
        # A base model without a chat template: plain text, the answer follows.
        text = "\n".join(m["content"] for m in msgs) + "\n"
        return text if think else text + EMPTY_THINK
    on = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    if think:
        return on
    off = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    if off != on:
        return off  # the template knows enable_thinking
    if on.rstrip().endswith("<think>"):
        # Templates that force an opening <think> (R1-distill): close it empty.
        return on.rstrip() + "\n\n</think>\n\n"
    return on + EMPTY_THINK


def _adds_bos(tokenizer) -> bool:
    """Whether the tokenizer's default encoding (its post-processor) puts a BOS token first."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    cached = tokenizer.__dict__.get("_sparkql_adds_bos")
    if cached is None:
        plain = list(tokenizer("x", add_special_tokens=False)["input_ids"])
        default = list(tokenizer("x")["input_ids"])
        cached = bool(default) and default[0] == bos and (not plain or plain[0] != bos)
        tokenizer.__dict__["_sparkql_adds_bos"] = cached
    return cached


def encode_prompt(tokenizer, text: str) -> list[int]:
    """The token ids of a prompt, the ONE encoding of prompts that circuits and generation share.

    A chat template already writes the BOS token as text (Llama-3: ``<|begin_of_text|>``), so
    the text is encoded without the tokenizer's special tokens, and BOS is put first only when
    the tokenizer adds one by default and the text did not already start with it (a base model's
    plain prompt): exactly one BOS either way, never two."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    if _adds_bos(tokenizer) and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids
