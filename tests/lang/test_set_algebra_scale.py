"""Set algebra of any length (issue 14): a generated study may chain hundreds of terms or nest
parentheses hundreds deep. Parser, resolver, compiler, formatter and the runtime's evaluation keep
their own stacks (Python's recursion limit is not the language's), chains of one operator fold into
one n-ary group, and what cannot fold beyond MAX_DEPTH levels is a located SparkError with the bound.

The reference is Python's own set algebra: `-` binds tighter than `&`, which binds tighter than `|`,
all left-associative, exactly as in the language, so `{L0H1} | {L1H2} - ...` evaluated by Python on
sets of (layer, head) pairs is what the study must mean."""

from __future__ import annotations

import random
import re

import pytest

from sparkql.errors import SparkError
from sparkql.lang import setexpr
from sparkql.lang.fmt import format_study
from sparkql.lang.parser import parse
from sparkql.plan.steps import HeadExpr

from lang_helpers import compile_in_tree

M = 'model base = "models/Qwen2.5-Math-1.5B-Instruct"\n'


def _random_expr(rng: random.Random, n_terms: int, max_depth: int) -> str:
    def literal() -> str:
        heads = rng.sample([(l, h) for l in range(3) for h in range(3)], rng.randint(0, 4))
        return "{" + ", ".join(f"L{l}H{h}" for l, h in heads) + "}"

    def expr(depth: int, budget: int) -> str:
        if budget <= 1 or depth >= max_depth:
            return literal()
        parts = [expr(depth + 1, budget // 3) if rng.random() < 0.3 else literal() for _ in range(rng.randint(2, 4))]
        text = parts[0]
        for p in parts[1:]:
            text += f" {rng.choice('|&-')} {p}"
        return f"({text})" if depth else text

    return expr(0, n_terms)


def _python_value(text: str) -> set[tuple[int, int]]:
    """The reference: the same text as Python set algebra."""
    py = re.sub(r"\{([^}]*)\}", lambda m: "set([" + re.sub(r"L(\d+)H(\d+)", r"(\1, \2)", m.group(1)) + "])", text)
    return eval(py)  # noqa: S307 - text built by this test from digits, braces and operators


def _plan_heads(tree, text: str) -> set[tuple[int, int]]:
    """Heads of `heads x = TEXT` as the compiler folds them (a model-free literal expression), then
    scaled on a model so the plan carries them."""
    plan = compile_in_tree(tree, M + f"heads x = {text}\nscale x by 0.5 on base as v\n")
    (step,) = [s for s in plan.steps if s.kind == "intervene"]
    return {tuple(h) for h in step.spec.heads.heads}


@pytest.mark.parametrize("seed", range(12))
def test_random_expressions_mean_what_python_means(study_tree, seed):
    rng = random.Random(seed)
    text = _random_expr(rng, n_terms=40, max_depth=5)
    assert _plan_heads(study_tree, text) == _python_value(text)
    # the formatter's output means the same and is a fixed point
    formatted = format_study(M + f"heads x = {text}\n").splitlines()[1].split(" = ", 1)[1]
    assert _python_value(formatted) == _python_value(text)
    assert format_study(M + f"heads x = {formatted}\n") == M + f"heads x = {formatted}\n"


def test_a_chain_of_500_terms_is_one_group(study_tree):
    terms = [f"{{L{i % 28}H{i % 12}}}" for i in range(500)]
    for op in "|&-":
        text = f" {op} ".join(terms)
        assert _plan_heads(study_tree, text) == _python_value(text)
        assert setexpr.depth(parse(M + f"heads x = {text}\n").statements[1].expr) == 1


def test_a_chain_of_named_sets_compiles_to_one_nary_node(study_tree):
    study = M + 'model ckpt = "runs/grpo-math220k/checkpoint-*"\ncircuit aime24 on ckpt[*] diff base as e\n'
    study += "heads big = " + " | ".join(["e"] * 500) + "\n"
    plan = compile_in_tree(study_tree, study)
    big = [s for s in plan.steps if s.kind == "heads" and s.spec.name == "big"]
    assert len(big) == 4 and all(len(s.spec.expr.args) == 500 for s in big)


def test_500_levels_of_one_operator_fold(study_tree):
    """Parenthesised 500 deep, to the left and to the right (Python's own parser refuses such text,
    so the reference is written out: the union of every literal; the intersection of all of them)."""
    lits = [{(i % 28, 1), (i % 5, 2)} for i in range(501)]
    text = lambda op: "(" * 500 + "{L0H1, L0H2}" + "".join(f" {op} {{L{i % 28}H1, L{i % 5}H2}})" for i in range(1, 501))
    assert _plan_heads(study_tree, text("|")) == set().union(*lits)
    right = "".join(f"{{L{i % 28}H1, L{i % 5}H2}} & (" for i in range(500)) + "{L0H1, L0H2}" + ")" * 500
    assert _plan_heads(study_tree, right) == set.intersection(*lits)


def test_500_levels_of_alternating_operators_are_refused_with_the_bound(study_tree):
    text = "{L1H1}"
    for i in range(500):
        text = f"{{L{i % 28}H2}} {'|&-'[i % 3]} ({text})"
    with pytest.raises(SparkError) as info:
        compile_in_tree(study_tree, M + f"heads x = {text}\n")
    assert f"nests 500 levels of operators; at most {setexpr.MAX_DEPTH}" in info.value.message
    assert info.value.span is not None and info.value.span.line == 2
    assert len(info.value.render().splitlines()[1]) < 200, "a long line is shown as a window on the span"


def test_nesting_up_to_the_bound_compiles_and_means_what_python_means(study_tree):
    text = "{L1H1}"
    for i in range(setexpr.MAX_DEPTH - 1):
        text = f"{{L{i % 28}H2, L1H1}} {'|&-'[i % 3]} ({text})"
    assert _plan_heads(study_tree, text) == _python_value(text)


def test_runtime_evaluation_has_no_depth_limit():
    """evaluate_head_expr folds with its own stack: a plan nested 5000 deep (built directly) evaluates."""
    from sparkql.runtime.steps.head_sets import evaluate_head_expr

    expr, ref = HeadExpr(op="literal", heads=[(0, 0)]), {(0, 0)}
    rng = random.Random(0)
    for _ in range(5000):
        other = {(rng.randrange(3), rng.randrange(3)) for _ in range(3)}
        op = rng.choice(["union", "intersect", "minus"])
        lit = HeadExpr(op="literal", heads=sorted(other))
        expr = HeadExpr(op=op, args=[expr, lit])
        ref = {"union": ref | other, "intersect": ref & other, "minus": ref - other}[op]
    assert set(evaluate_head_expr(expr, ctx=None)) == ref


def test_a_byte_order_mark_is_ignored(study_tree, tmp_path):
    from sparkql.plan.compile import compile_file, read_study

    text = M + "scale heads L1H1 by 0.5 on base\n"
    plain = compile_in_tree(study_tree, text)
    bom = study_tree / "bom.spark"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_study(bom) == text
    assert [s.key for s in compile_file(bom).steps] == [s.key for s in plain.steps]
    # and given as text (an editor plugin): errors still point at the right column
    with pytest.raises(SparkError) as info:
        compile_in_tree(study_tree, "\ufeffmodel base = 3\n")
    assert (info.value.span.line, info.value.span.column) == (1, 14)
