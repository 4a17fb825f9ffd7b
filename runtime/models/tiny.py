"""Tiny random models in real Hugging Face format, with a locally built tokenizer.

No weights can be downloaded on these machines, so tests and benchmarks build
what they need: :func:`build_char_tokenizer` makes a byte-level tokenizer
with no merges (one token per character of ASCII text, one per digit as
in Qwen; ``<think>`` and ``</think>`` one ordinary added token each) with a ChatML chat template that understands ``<think>`` and
``enable_thinking``; :func:`make_tiny_model` writes a random-weight model of a
supported family next to it. Both load with ``AutoTokenizer`` /
``AutoModelForCausalLM.from_pretrained(dir, local_files_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]
"""Added tokens (one id each) but not special: as in DeepSeek-R1-Distill's and Qwen3's tokenizers,
so decoding with ``skip_special_tokens=True`` (TRL, vLLM's default) keeps the reasoning markers."""

# ChatML, as Qwen uses it. With thinking off the assistant turn opens with an empty
# think block, which is what Qwen3's template does for enable_thinking=False.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)


# Qwen2's pre-tokenizer regex: digits are split one per token (\p{N}), as in Qwen2/2.5/3.
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def build_char_tokenizer(out_dir: str | Path | None = None):
    """A byte-level BPE tokenizer with NO merges: every byte is one token (so every digit and
    every character of ASCII text), built with the pipeline of Qwen2's tokenizer (NFC, Qwen's
    pre-tokenizer regex, ByteLevel). Using Qwen2's exact pipeline matters: transformers loads
    any qwen2-architecture directory with Qwen2Tokenizer, which rebuilds that pipeline from
    tokenizer.json's vocab and merges, so our tokenizer behaves the same through either class.
    Saved to ``out_dir`` when given."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + THINK_TOKENS + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        padding_side="left",  # decoder-only generation pads on the left
    )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(out_dir)
    return fast


def tiny_config(family: str = "qwen2", *, vocab_size: int, n_layers: int = 2, n_heads: int = 4,
                n_kv_heads: int = 2, hidden: int = 32, intermediate: int = 64, head_dim: int | None = None,
                max_positions: int = 512, initializer_range: float = 0.2, eos_token_id: int | None = None,
                pad_token_id: int | None = None):
    """A transformers config for a tiny model of ``family`` (qwen2 | qwen3 | llama | mistral)."""
    from transformers import LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=max_positions,
        initializer_range=initializer_range,
        tie_word_embeddings=False,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        bos_token_id=None,
    )
    if family == "qwen2":
        cfg = Qwen2Config(**common)
    elif family == "qwen3":
        cfg = Qwen3Config(**common, head_dim=head_dim or hidden // n_heads)
    elif family == "llama":
        cfg = LlamaConfig(**common, head_dim=head_dim or hidden // n_heads)
    elif family == "mistral":
        cfg = MistralConfig(**common, head_dim=head_dim or hidden // n_heads)
    else:
        raise ValueError(f"unknown family {family!r}")
    return cfg


def make_tiny_model(out_dir: str | Path, family: str = "qwen2", *, n_layers: int = 2, n_heads: int = 4,
                    n_kv_heads: int = 2, hidden: int = 32, intermediate: int = 64, head_dim: int | None = None,
                    seed: int = 0, initializer_range: float = 0.2) -> Path:
    """Write a random-weight model of ``family`` and the char tokenizer to ``out_dir``; return it.

    ``initializer_range`` defaults high (0.2) so that random models have non-trivial
    attention patterns and edge scores, not near-uniform outputs.
    """
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    tok = build_char_tokenizer(out)
    cfg = tiny_config(
        family, vocab_size=len(tok), n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, hidden=hidden,
        intermediate=intermediate, head_dim=head_dim, initializer_range=initializer_range,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    return out
