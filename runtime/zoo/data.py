"""Synthetic arithmetic for the toy organism: problems, answers, traces, prompts.

Torch-free and deterministic from a seed (``random.Random``).

The tasks are built so that post-training has something real to change:

* **Easy** problems are one operation: ``x+c`` and ``x-c`` (``x`` up to 15,
  ``c`` up to 5). A small model answers them directly.
* **Hard** problems chain three operations on four digits 0..5 (``a+b-c+d``
  and the other sign patterns). Answering directly needs all three operations
  inside one forward pass; a step-by-step trace turns them into three easy
  problems::

      <think>
      4+5=9
      9-3=6
      6+2=8
      </think>

      4+5-3+2=\\boxed{8}

  The hard problems of the evaluation set are held out of every training set,
  so direct answers cannot be memorised, while traces generalise.

Assistant turns come in two forms: *direct* (an empty think block, then the
boxed answer, as Qwen3 answers with thinking off) and *trace* (the steps inside
``<think>``). The base model sees mostly direct answers and a small share of
traces (as a pretrained model has seen a little reasoning); SFT trains on
traces; GRPO rewards correct boxed answers, whichever form produced them.

Prompts are the bare problem in the chat template (``instruction_share`` of the
recipe is 0): a 70-character instruction would more than double every training
sequence, and the build has minutes. Studies of the zoo therefore evaluate with
``instruction = ""`` (see studies/toy.spark), and the pair prompts carry none.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from sparkql.plan.steps import GenerateSpec

INSTRUCTION: str = GenerateSpec.model_fields["instruction"].default
"""The instruction the eval stack appends to a problem by default; the model is trained with it."""

SEPARATORS = ("\n",)
"""How the eval stack joins problem and instruction (sparkql.runtime.generation.prompting)."""

HARD_FORMS = tuple(f"a{x}b{y}c{z}d" for x in "+-" for y in "+-" for z in "+-")
EASY_FORMS = ("x+c", "x-c")

DATA_DIR = Path(__file__).resolve().parents[2] / "sparkql" / "data" / "zoo"
"""Where the shipped datasets live in a source checkout (``sparkql/data/zoo``)."""


@dataclass(frozen=True)
class Problem:
    text: str
    """The problem as the user writes it, e.g. ``7*8+5``."""
    answer: int
    steps: tuple[tuple[str, int], ...]
    """The trace: (left-hand side, value) per step, e.g. (("7*8", 56), ("56+5", 61))."""
    kind: str
    """``easy`` or ``hard``."""


TOP = 5
"""Largest operand (digits 0..5): a table small enough for a 4-layer model to learn within the
build's budget (with 0..9 it reaches ~40% on easy problems in the same steps)."""


def _primitive(op: str, x: int, y: int) -> int:
    return {"+": x + y, "-": x - y}[op]


def easy_problem(rng: random.Random, form: str | None = None) -> Problem:
    """One addition or subtraction: ``x`` in 0..3*TOP (a sum of up to three operands, so every
    step of a hard problem's trace is an easy problem), ``c`` in 0..TOP, no negative results."""
    form = form or rng.choice(EASY_FORMS)
    c = rng.randint(0, TOP)
    if form == "x+c":
        x = rng.randint(0, 3 * TOP)
        lhs, val = f"{x}+{c}", x + c
    elif form == "x-c":
        x = rng.randint(c, 3 * TOP)
        lhs, val = f"{x}-{c}", x - c
    else:
        raise ValueError(form)
    return Problem(lhs, val, ((lhs, val),), "easy")


def hard_problem(rng: random.Random, form: str | None = None) -> Problem:
    """Three chained operations on four operands in 0..TOP; every intermediate and the answer
    are >= 0, so each step of the trace is an easy problem."""
    form = form or rng.choice(HARD_FORMS)
    ops = form[1::2]
    while True:
        vals = [rng.randint(0, TOP) for _ in range(len(ops) + 1)]
        steps, acc = [], vals[0]
        for op, v in zip(ops, vals[1:]):
            nxt = _primitive(op, acc, v)
            steps.append((f"{acc}{op}{v}", nxt))
            acc = nxt
        if all(v >= 0 for _, v in steps):
            break
    text = str(vals[0]) + "".join(f"{op}{v}" for op, v in zip(ops, vals[1:]))
    return Problem(text, acc, tuple(steps), "hard")


def trace_text(p: Problem) -> str:
    """The trace's lines. Each starts from the previous line's result (``4+5=9``, ``9-3=6``,
    ``6+2=8``), so writing a line means copying that result: a lookup by content (the digits
    after the last ``=``), which toy_chain_pairs probes."""
    return "\n".join(f"{lhs}={val}" for lhs, val in p.steps)


def assistant_text(p: Problem, trace: bool) -> str:
    """The assistant turn's content (without the closing ``<|im_end|>``).

    The answer restates the problem before the boxed result (``7+8-6=\\boxed{9}``): copying
    the problem next to the answer is a skill a small model learns fast (induction), after
    which computing the result is local, so the base learns in a few hundred steps."""
    think = f"<think>\n{trace_text(p)}\n</think>" if trace else "<think>\n\n</think>"
    return f"{think}\n\n{p.text}=\\boxed{{{p.answer}}}"


def user_text(problem: str, instruction: bool = True, sep: str = "\n") -> str:
    return f"{problem}{sep}{INSTRUCTION}" if instruction else problem


def render_prompt(user: str, enable_thinking: bool = True) -> str:
    """The chat-templated prompt (generation prompt included), exactly as the zoo
    tokenizer's template renders ``[{"role": "user", "content": user}]`` (a test checks)."""
    out = f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    return out if enable_thinking else out + "<think>\n\n</think>\n\n"


# --- evaluation sets (shipped as sparkql/data/zoo/*.jsonl) ---------------------------------

EVAL_SEED = 1234
N_EASY = 80
N_HARD = 80
N_PAIRS = 32


def _distinct(make, rng: random.Random, n: int) -> list[Problem]:
    seen: dict[str, Problem] = {}
    while len(seen) < n:
        p = make(rng)
        seen.setdefault(p.text, p)
    return list(seen.values())


def eval_problems(seed: int = EVAL_SEED) -> dict[str, list[Problem]]:
    """The easy and hard evaluation sets (distinct problems, deterministic)."""
    rng = random.Random(seed)
    return {"easy": _distinct(easy_problem, rng, N_EASY), "hard": _distinct(hard_problem, rng, N_HARD)}


def held_out() -> set[str]:
    """Problems no training set may contain: the hard evaluation set."""
    return {p.text for p in eval_problems()["hard"]}


def redraw_digits(p: Problem, rng: random.Random) -> Problem:
    """The same form of problem with every operand redrawn to the same number of digits,
    so the prompt keeps its token length (one token per character) and meaning changes."""
    form = _form(p)
    # Hard problems have single-digit operands, so any redraw keeps the length; redraw
    # until both the first intermediate and the answer differ (a real corruption).
    while True:
        q = hard_problem(rng, form)
        if q.answer != p.answer and q.steps[0][1] != p.steps[0][1]:
            return q


def pair_rows(seed: int = EVAL_SEED + 1, n: int = N_PAIRS) -> list[dict]:
    """Clean/corrupt prompt pairs for circuits.

    A pair is a hard problem rendered the way the model sees it (chat template, thinking
    on, bare problem) followed by the opening of a trace up to the first ``=``,
    so the next token is the first digit of the first intermediate result: the place
    where the model computes. The corrupt prompt is the same form with digits redrawn
    (equal length, different result)."""
    rng = random.Random(seed)
    rows = []
    for i, p in enumerate(_distinct(hard_problem, rng, n)):
        q = redraw_digits(p, rng)

        def prompt(x: Problem) -> str:
            return render_prompt(x.text) + f"<think>\n{x.steps[0][0]}="

        rows.append({
            "id": f"pair-{i:03d}", "clean": prompt(p), "corrupt": prompt(q),
            "answer": str(p.steps[0][1]), "corrupt_answer": str(q.steps[0][1]),
            "problem": p.text, "corrupt_problem": q.text,
        })
    return rows


def chain_pair_rows(seed: int = EVAL_SEED + 2, n: int = N_PAIRS) -> list[dict]:
    """Clean/corrupt pairs at the chain's lookup: a hard problem's prompt, ``<think>``, its first
    trace line, and the line break, so the next token is the first digit of the first result,
    copied to start the second line (``...<think>\n4+5=9\n`` -> ``9``): the step that makes a
    trace a chain, and the one a model that rarely traced (the base) has least practised. The
    corrupt problem has the same form, the same first operand and lengths, and another first
    result (a different first digit); neither result starts with the first operand's digit, so
    a model that copied the problem's start instead predicts the same wrong token for both and
    that path carries no signal."""
    rng = random.Random(seed)

    def usable(x: Problem) -> bool:
        return str(x.steps[0][1])[0] != x.text[0]

    rows: list[dict] = []
    seen: set[str] = set()
    while len(rows) < n:
        p = hard_problem(rng)
        if p.text in seen or not usable(p):
            continue
        seen.add(p.text)
        q = None
        for _ in range(200):  # some problems have no such partner (e.g. 1-... has results 0 and 1 only)
            c = hard_problem(rng, _form(p))
            a, b = str(p.steps[0][1]), str(c.steps[0][1])
            if c.text[0] == p.text[0] and len(a) == len(b) and a[0] != b[0] and usable(c):
                q = c
                break
        if q is None:
            continue
        i = len(rows)

        def prompt(x: Problem) -> str:
            return render_prompt(x.text) + f"<think>\n{x.steps[0][0]}={x.steps[0][1]}\n"

        rows.append({
            "id": f"chain-{i:03d}", "clean": prompt(p), "corrupt": prompt(q),
            "answer": str(p.steps[0][1])[0], "corrupt_answer": str(q.steps[0][1])[0], "problem": p.text, "corrupt_problem": q.text,
        })
    return rows


def dataset_rows() -> dict[str, list[dict]]:
    """Rows of the three shipped files."""
    probs = eval_problems()
    out = {
        name: [{"id": f"{name}-{i:03d}", "problem": p.text, "answer": str(p.answer), "form": _form(p)}
               for i, p in enumerate(ps)]
        for name, ps in probs.items()
    }
    out["pairs"] = pair_rows()
    out["chain_pairs"] = chain_pair_rows()
    return out


def _form(p: Problem) -> str:
    letters = iter("abcd")
    out, prev_digit = [], False
    for ch in p.text:
        if ch.isdigit():
            if not prev_digit:
                out.append(next(letters))
            prev_digit = True
        else:
            out.append(ch)
            prev_digit = False
    return "".join(out)


def write_datasets(out_dir: str | Path = DATA_DIR) -> dict[str, Path]:
    """(Re)generate easy.jsonl, hard.jsonl and pairs.jsonl; byte-identical on every run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in dataset_rows().items():
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        paths[name] = path
    return paths


if __name__ == "__main__":  # python -m sparkql.runtime.zoo.data
    for name, path in write_datasets().items():
        print(name, path)


# --- grading (the GRPO reward and the build's accuracy report) ---------------------------

def extract_answer(completion: str) -> str | None:
    """The content of the last ``\\boxed{...}`` after the last ``</think>`` (None: no answer).

    A completion that opened ``<think>`` and never closed it has no answer region, like
    the eval stack's grader treats a truncated thinking trace."""
    if "<think>" in completion and "</think>" not in completion:
        return None
    region = completion.rsplit("</think>", 1)[-1]
    start = region.rfind("\\boxed{")
    if start < 0:
        return None
    end = region.find("}", start)
    if end < 0:
        return None
    return region[start + len("\\boxed{"): end].strip()


def is_correct(completion: str, answer: int | str) -> bool:
    return extract_answer(completion) == str(answer)


def uses_trace(completion: str) -> bool:
    """True when the completion reasoned inside a non-empty think block."""
    if "<think>" not in completion or "</think>" not in completion:
        return False
    inner = completion.split("<think>", 1)[1].split("</think>", 1)[0]
    return bool(inner.strip())
