"""A study tree for compiler tests: config-only model directories of real shapes and small data.

Compiling needs config.json (architecture, shape) and the weight files' names/sizes/mtimes (the
fingerprint), not the weights: the models here are an empty model.safetensors beside the config
of the real model, with fixed mtimes so that plans are reproducible.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

QWEN25_15B = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28,
    "num_attention_heads": 12, "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936,
}
QWEN3_8B = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 4096, "num_hidden_layers": 36,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288,
    "vocab_size": 151936,
}
LLAMA_TINY = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 300,
}
GPT2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": 2}

FIXED_MTIME = 1_700_000_000

MODELS = {
    "models/Qwen2.5-Math-1.5B-Instruct": QWEN25_15B,
    "models/Qwen2.5-Math-1.5B": QWEN25_15B,
    "models/DeepSeek-R1-Distill-Qwen-1.5B": QWEN25_15B,
    "models/Qwen3-8B": QWEN3_8B,
    "models/llama-tiny": LLAMA_TINY,
    "models/gpt2": GPT2,
    "models/llama-ctx512": {**LLAMA_TINY, "max_position_embeddings": 512},
    **{f"runs/grpo-math220k/checkpoint-{s}": QWEN25_15B for s in (100, 200, 300, 2500)},
    **{f"runs/sft-math220k/checkpoint-{s}": QWEN25_15B for s in (500, 1000, 1500)},
}


def _write_model(root: Path, rel: str, config: dict) -> None:
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config, sort_keys=True))
    (d / "model.safetensors").write_bytes(b"")
    (d / "tokenizer.json").write_text("{}")  # `check` wants a tokenizer beside the weights; none is read
    os.utime(d / "model.safetensors", (FIXED_MTIME, FIXED_MTIME))


def _write_data(root: Path) -> None:
    data = root / "data"
    data.mkdir(exist_ok=True)
    with open(data / "pairs.jsonl", "w") as f:
        for i in range(6):
            f.write(json.dumps({"clean": f"Q: {i}+{i + 2}=", "corrupt": f"Q: {i + 1}+{i + 3}=", "answer": str(2 * i + 2)}) + "\n")
    with open(data / "problems.jsonl", "w") as f:
        for i in range(5):
            f.write(json.dumps({"id": f"p{i}", "question": f"What is {i} + 2?", "answer": str(i + 2)}) + "\n")
    with open(data / "gpqa_diamond.jsonl", "w") as f:
        f.write(json.dumps({"id": "g0", "question": "Which is a noble gas?", "choices": ["Neon", "Iron", "Oxygen", "Sodium"], "answer": "Neon"}) + "\n")
    (data / "problems.csv").write_text("id,question,answer\nc0,What is 1+1?,2\nc1,What is 2+2?,4\n")
    (data / "notes.txt").write_text("not a dataset\n")
    _write_hostile_data(data)


def _write_hostile_data(data: Path) -> None:
    """Datasets a careless export produces (issue 14): each must be refused with file, row and field."""
    good = {"id": "h0", "question": "What is 1 + 1?", "answer": "2"}
    rows = {
        "null_problem.jsonl": [good, {**good, "id": "h1", "question": None}],
        "list_problem.jsonl": [good, {**good, "id": "h1", "question": ["What", "is"]}],
        "bool_answer.jsonl": [good, {**good, "id": "h1", "answer": True}],
        "missing_answer.jsonl": [good, good, {"id": "h2", "question": "What is 2 + 2?"}],
    }
    for name, recs in rows.items():
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in recs))
    (data / "lines.json").write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "h1"}) + "\n")
    (data / "empty.jsonl").write_text("")
    (data / "list_line.jsonl").write_text(json.dumps(good) + "\n[1, 2]\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["b0", "b1"], "question": [b"What is 1 + 1?", b"What is 2 + 2?"],
                             "answer": ["2", "4"]}), data / "binary.parquet")


@pytest.fixture(scope="session")
def study_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study_tree")
    for rel, cfg in MODELS.items():
        _write_model(root, rel, cfg)
    (root / "runs" / "empty").mkdir(parents=True)
    _write_data(root)
    return root


@pytest.fixture(autouse=True)
def _full_zoo_preset(monkeypatch):
    """studies/toy.spark's plan depends on the zoo's layout: pin the demo's preset."""
    monkeypatch.delenv("SPARKQL_ZOO_PRESET", raising=False)
