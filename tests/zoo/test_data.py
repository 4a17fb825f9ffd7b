"""The zoo's synthetic tasks and the shipped toy_easy / toy_hard / toy_pairs files."""

from __future__ import annotations

import json
import random

from sparkql.builtins import BUILTIN_DATASETS
from sparkql.runtime.zoo import data


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in BUILTIN_DATASETS[name].path.read_text().splitlines()]


def test_shipped_files_are_what_the_generator_writes(tmp_path):
    written = data.write_datasets(tmp_path)
    for name, builtin in (("easy", "toy_easy"), ("hard", "toy_hard"), ("pairs", "toy_pairs"),
                          ("chain_pairs", "toy_chain_pairs")):
        assert written[name].read_bytes() == BUILTIN_DATASETS[builtin].path.read_bytes(), (
            f"sparkql/data/zoo/{name}.jsonl is stale: run python -m sparkql.runtime.zoo.data")


def test_answers_are_right_and_ids_unique():
    for name in ("toy_easy", "toy_hard"):
        rows = _rows(name)
        assert 50 <= len(rows) <= 100
        assert len({r["id"] for r in rows}) == len(rows)
        assert len({r["problem"] for r in rows}) == len(rows)  # distinct problems
        for r in rows:
            assert set(r["problem"]) <= set("0123456789+-")
            assert int(r["answer"]) == eval(r["problem"]) >= 0  # noqa: S307 - digits and +/- only
    hard = _rows("toy_hard")
    assert all(len(data._form(data.Problem(r["problem"], 0, (), "hard"))) == 7 for r in hard)  # three operations


def test_traces_decompose_hard_problems_into_easy_steps():
    rng = random.Random(0)
    for _ in range(200):
        p = data.hard_problem(rng)
        assert len(p.steps) == 3 and p.steps[-1][1] == p.answer == eval(p.text)  # noqa: S307
        prev = None
        for lhs, val in p.steps:
            assert eval(lhs) == val >= 0  # noqa: S307
            assert prev is None or lhs.startswith(str(prev))  # each step continues from the last
            prev = val
        text = data.assistant_text(p, trace=True)
        assert text.startswith("<think>\n" + "".join(f"{lhs}={val}\n" for lhs, val in p.steps) + "</think>")
        assert data.extract_answer(text) == str(p.answer)
        assert data.uses_trace(text) and not data.uses_trace(data.assistant_text(p, trace=False))


def test_hard_eval_problems_never_reach_training():
    from sparkql import zoo
    from sparkql.runtime.zoo import train

    held = data.held_out()
    assert held == {r["problem"] for r in _rows("toy_hard")}
    recipe = zoo.recipe("tiny")
    rng = random.Random(0)
    for make in (train.base_batch(recipe), train.sft_batch(recipe)):
        for _ in range(50):
            for prompt, completion in make(rng, 64):
                problem = completion.rsplit("\n", 1)[-1].split("=\\boxed")[0]
                assert problem not in held


def test_extract_answer_follows_the_eval_grader_conventions():
    assert data.extract_answer("<think>\n1+2=3\n</think>\n\n1+2=\\boxed{3}") == "3"
    assert data.extract_answer("<think>\n1+2=3\n") is None  # thinking never closed: no answer
    assert data.extract_answer("<think>\n\\boxed{4}</think> no box") is None  # box inside thinking only
    assert data.extract_answer("\\boxed{7}") == "7"


def test_pairs_are_equal_length_corruptions_that_change_the_result():
    from sparkql.runtime.models.tiny import build_char_tokenizer

    tok = build_char_tokenizer(None)
    rows = _rows("toy_pairs")
    assert len(rows) == 32
    for r in rows:
        clean = tok(r["clean"], add_special_tokens=False)["input_ids"]
        corrupt = tok(r["corrupt"], add_special_tokens=False)["input_ids"]
        assert len(clean) == len(corrupt)
        assert r["clean"] != r["corrupt"] and r["answer"] != r["corrupt_answer"]
        # the prompt ends where the model computes the first intermediate result
        first = r["clean"].rsplit("<think>\n", 1)[1]
        assert first.endswith("=") and str(eval(first[:-1])) == r["answer"]  # noqa: S307


def test_chain_pairs_stop_where_the_previous_result_is_copied():
    """The next token is the first digit of the first line's result (what a chained trace writes
    next); clean and corrupt have equal token lengths, the same first operand (what a trace that
    copied the problem's start would write next) and different answers, neither equal to that operand."""
    from sparkql.runtime.models.tiny import build_char_tokenizer

    tok = build_char_tokenizer(None)
    rows = _rows("toy_chain_pairs")
    assert len(rows) == 32 and len({r["problem"] for r in rows}) == 32
    for r in rows:
        assert len(tok(r["clean"], add_special_tokens=False)["input_ids"]) == len(
            tok(r["corrupt"], add_special_tokens=False)["input_ids"])
        for prompt, problem, answer in ((r["clean"], r["problem"], r["answer"]),
                                        (r["corrupt"], r["corrupt_problem"], r["corrupt_answer"])):
            line = prompt.rsplit("<think>\n", 1)[1]
            assert line.endswith("\n") and line.count("\n") == 1
            lhs, result = line[:-1].split("=")
            assert problem.startswith(lhs) and str(eval(lhs)) == result and result[0] == answer  # noqa: S307
            assert answer != problem[0]
        assert r["problem"][0] == r["corrupt_problem"][0] and r["answer"] != r["corrupt_answer"]


def test_prompts_render_like_the_eval_stack():
    """The zoo trains on exactly the text sparkql.runtime.generation.prompting gives the model for a study's
    ``instruction = ""`` (the bare problem), and with the default instruction where the recipe
    asks for it."""
    from sparkql.runtime.generation.prompting import render_prompt
    from sparkql.runtime.models.tiny import build_char_tokenizer

    tok = build_char_tokenizer(None)
    for problem in ("4+5-3", "10-3"):
        for think in (True, False):
            assert render_prompt(tok, problem, think=think, instruction="") == data.render_prompt(problem, think)
            assert render_prompt(tok, problem, think=think) == data.render_prompt(data.user_text(problem), think)
    pair = _rows("toy_pairs")[0]
    assert pair["clean"].startswith(render_prompt(tok, pair["problem"], instruction=""))


def test_think_markers_are_ordinary_added_tokens(tmp_path):
    """As in DeepSeek-R1-Distill's and Qwen3's tokenizers: one id each, not special, so a decoder that
    skips special tokens (TRL, vLLM's default) keeps the reasoning; the chat markers stay special.
    Checked through the class transformers picks for a qwen2 model directory too."""
    from transformers import AutoTokenizer

    from sparkql.runtime.models.tiny import make_tiny_model

    text = "<|im_start|>assistant\n<think>\n1+2=3\n</think>\n\\boxed{3}<|im_end|>"
    for tok in (AutoTokenizer.from_pretrained(make_tiny_model(tmp_path / "m"), local_files_only=True),):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        think, end = tok.convert_tokens_to_ids(["<think>", "</think>"])
        assert ids.count(think) == 1 and ids.count(end) == 1  # one id each, not split into characters
        # every other character one token, and each marker one token
        assert len(ids) == 1 + len("assistant\n") + 1 + len("\n1+2=3\n") + 1 + len("\n\\boxed{3}") + 1
        assert tok.decode(ids, skip_special_tokens=True) == "assistant\n<think>\n1+2=3\n</think>\n\\boxed{3}"
        special = set(tok.all_special_tokens)
        assert "<think>" not in special and "</think>" not in special and "<|im_end|>" in special
