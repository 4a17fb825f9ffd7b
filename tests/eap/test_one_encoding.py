"""Circuits and generation give the model the same tokens: one encoding function
(sparkql.runtime.generation.prompting.encode_prompt). A Llama-3-style tokenizer, whose
post-processor adds <|begin_of_text|> and whose chat template writes it too, gets exactly one
BOS in circuit prompts and in the ids the generation backend feeds the model (not the two
that encoding with the tokenizer's default add_special_tokens=True gives)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from sparkql.plan.steps import CircuitParams, DatasetRef, SamplingParams
from sparkql.runtime.eap.prompts import build_pairs
from sparkql.runtime.generation.prompting import encode_prompt, render_prompt

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def llama3_style_tokenizer():
    """A byte-level tokenizer with Llama 3's special tokens, a TemplateProcessing post-processor
    that puts <|begin_of_text|> first (as Llama 3's tokenizer.json does) and a template that
    writes {{ bos_token }}. Built locally; nothing is downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(SPECIAL + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                                       special_tokens=[("<|begin_of_text|>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<|end_of_text|>", chat_template=LLAMA3_TEMPLATE, padding_side="left")


def test_default_encoding_would_double_the_bos():
    tok = llama3_style_tokenizer()
    text = render_prompt(tok, "What is 12+34?", think=True)
    assert text.startswith("<|begin_of_text|>")
    assert tok(text)["input_ids"][:2] == [0, 0]  # the bug: the template's BOS and the post-processor's
    ids = encode_prompt(tok, text)
    assert ids[0] == 0 and ids.count(0) == 1
    assert encode_prompt(tok, "plain text")[:2] == [0, tok("p", add_special_tokens=False)["input_ids"][0]]


def test_circuits_and_generation_see_one_bos_and_the_same_tokens(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from sparkql.runtime.generation.transformers_backend import GenRequest, generate_transformers
    from sparkql.runtime.models.adapters import FAMILIES
    from sparkql.runtime.models.loading import LoadedModel

    tok = llama3_style_tokenizer()
    problem = "What is 12+34?"
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"q": problem, "a": "46"}) + "\n")
    ds = DatasetRef(name="d", path=str(p), format="jsonl", roles={"problem": "q", "answer": "a"}, fingerprint="x")
    params = CircuitParams(corrupt="digits", think=True, system=None)
    pairs = build_pairs(SimpleNamespace(tokenizer=tok), ds, params, log=lambda _m: None)
    clean = pairs.examples[0].clean
    assert clean[0] == 0 and clean.count(0) == 1 and pairs.examples[0].corrupt.count(0) == 1

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                      bos_token_id=0, eos_token_id=4, pad_token_id=1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    seen: list[list[int]] = []
    model.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["input_ids"][0].tolist()) if k.get("input_ids") is not None and not seen else None,
        with_kwargs=True)
    lm = LoadedModel(ref=None, path=Path("."), model=model, tokenizer=tok, adapter=FAMILIES["llama"],
                     config=cfg.to_dict(), device=torch.device("cpu"), dtype=torch.float32)
    # the prompt generation renders with its default instruction: the circuit's prompt text
    prompt = render_prompt(tok, problem, think=True, system=None)
    sp = SamplingParams(n=1, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, max_tokens=1, seed=0)
    generate_transformers(lm, [GenRequest(problem_id="0", sample_idx=0, prompt=prompt, seed=0)], sp)
    fed = [t for t in seen[0] if t != 1]  # left padding aside
    assert fed[0] == 0 and fed.count(0) == 1
    assert fed == encode_prompt(tok, prompt) == clean  # the very tokens the circuit scored
