"""Grading completions (docs/evaluation.md).

Torch-free: the CLI's ``regrade`` and ``grade`` and the TUI use it without loading a model.

The pipeline for one sample is

1. **answer region**: with thinking on, the text after the last ``</think>``;
   a completion with no ``</think>`` that was cut at ``max_tokens`` is
   *truncated* (counted wrong, and counted apart in the metrics). A
   completion with no ``</think>`` that stopped on its own is graded whole:
   models whose chat template has no thinking block (Qwen2.5-Math-Instruct,
   the paper's base model) never write one. Unicode minus signs read as ``-``.
2. **extraction** by grader (:mod:`sparkql.runtime.grading.answers`): ``math`` under the
   eval's rule, ``strict`` (the last ``\\boxed{}``) or ``lenient`` (Math-Verify's
   order as lighteval and open-r1 use it); ``gsm8k`` the boxed answer, else the
   number after ``####``, else the last number; ``gpqa`` an ``Answer: X`` letter,
   a boxed letter or a last line that is only a letter; ``triviaqa`` the boxed
   answer, ``answer: ...`` or a short last line; ``exact`` the boxed answer or
   the whole region.
3. **comparison**: cheap exact paths in-process (integers for AIME, compared as
   digit strings, so a 10,000-digit answer is just wrong; normalized strings);
   otherwise math-verify, with the gold answer wrapped in ``$...$``, in worker
   processes with a hard per-answer deadline (:class:`VerifyPool`), so a
   pathological expression (``10^{10^{10}}``) costs one timeout, not the run.

Statuses: ``ok`` (an answer was extracted and compared), ``no_answer``,
``truncated``, ``timeout`` (math-verify exceeded its deadline; counted wrong),
``error`` (math-verify raised, or the answer could not be compared; counted wrong).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Iterable, Sequence

from sparkql.runtime.grading.answers import (  # noqa: F401 - re-exported: the grading API in one place
    EXTRACT_RULES,
    LETTERS,
    MINUS_SIGNS,
    boxes,
    extract_letter,
    extract_math,
    extract_short_answer,
    gsm8k_marker,
    integer_key,
    last_boxed,
    last_number,
    normalize_math,
    strip_text_macro,
)
from sparkql.runtime.grading.verify_pool import VerifyPool, VerifyResult  # noqa: F401

GRADERS = ("math", "gsm8k", "triviaqa", "gpqa", "exact")
STATUSES = ("ok", "no_answer", "truncated", "timeout", "error")
"""Every status a graded sample can have, in the order reports show them."""


@dataclass(frozen=True)
class Graded:
    extracted: str | None
    status: str
    """ok | no_answer | truncated | timeout | error"""
    correct: bool
    detail: str = ""
    """Why, for ``timeout`` and ``error``."""


@dataclass(frozen=True)
class GradeRequest:
    completion: str
    gold: str
    """As stored in ``samples.gold``: the answer (math, gsm8k, exact), the letter (gpqa) or a JSON
    list of accepted aliases (triviaqa, see :func:`gold_for`)."""
    finish_reason: str = "stop"
    think: bool = True


# --------------------------------------------------------------------------- answer region


def answer_region(completion: str, think: bool, finish_reason: str) -> str | None:
    """The part of the completion that holds the answer, or None when the sample is truncated
    (thinking on, cut at max_tokens before ``</think>``)."""
    idx = completion.rfind("</think>")
    if idx >= 0:
        region = completion[idx + len("</think>"):]
    elif think and finish_reason == "length":
        return None
    else:
        region = completion
    return region.translate(MINUS_SIGNS)


# --------------------------------------------------------------------------- normalization


def as_integer(s: str) -> int | None:
    """``"070"`` -> 70, ``"1,000"`` -> 1000, ``"12."`` -> 12; None for anything else, and for
    integers too long for Python to convert (> 4,300 digits; compare :func:`integer_key`)."""
    key = integer_key(s)
    if key is None or len(key) > 4000:
        return None
    return int(key)


_TRIVIA_PUNCT = set(string.punctuation) | {"‘", "’", "´", "`"}


def normalize_trivia(s: str) -> str:
    """The official TriviaQA scorer's normalization: underscores to spaces, lowercase,
    punctuation *replaced by a space* (so "Jay-Z" matches the alias "Jay Z"; SQuAD's rule deletes
    it), articles dropped, spaces squashed."""
    s = s.replace("_", " ").lower()
    s = "".join(" " if ch in _TRIVIA_PUNCT else ch for ch in s)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _decimal(s: str) -> Decimal | None:
    t = s.translate(MINUS_SIGNS).replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        d = Decimal(t)
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


# --------------------------------------------------------------------------- gold values


def gold_for(grader: str, row: dict, problem_id: str, seed: int) -> str:
    """The value stored in ``samples.gold`` for a dataset row (roles applied).

    gpqa: the letter of the correct option after the seeded shuffle (:func:`gpqa_options`);
    triviaqa: a JSON list of accepted answers (the answer and the ``choices`` aliases)."""
    if grader == "gpqa":
        _, letter = gpqa_options(problem_id, row.get("answer"), row.get("choices"), seed)
        return letter
    if grader == "triviaqa":
        aliases = [str(row.get("answer") or "")]
        choices = row.get("choices") or []
        if isinstance(choices, str):
            choices = json.loads(choices) if choices.startswith("[") else [choices]
        aliases += [str(c) for c in choices]
        seen: list[str] = []
        for a in aliases:
            if a and a not in seen:
                seen.append(a)
        return json.dumps(seen, ensure_ascii=False)
    return str(row.get("answer", ""))


def gpqa_options(problem_id: str, answer, choices, seed: int) -> tuple[list[str], str]:
    """Options in a seeded order and the correct letter.

    ``answer`` is the correct option's text and ``choices`` the incorrect ones (GPQA's
    ``Incorrect Answer 1..3``). When ``choices`` already contains the answer it is the full
    option list. The order depends only on (seed, problem id), so generation (which shows the
    options) and grading (which needs the letter) agree, and a rerun shows the same order."""
    if isinstance(choices, str):
        choices = json.loads(choices)
    opts = [str(c).strip() for c in (choices or [])]
    ans = str(answer).strip()
    if ans not in opts:
        opts = [ans] + opts
    digest = hashlib.sha256(f"gpqa\x00{seed}\x00{problem_id}".encode()).digest()
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(opts)
    return opts, LETTERS[opts.index(ans)]


def gpqa_problem_text(question: str, options: Sequence[str]) -> str:
    """The question with lettered options, as the model sees it."""
    lines = [question.strip(), ""]
    lines += [f"{LETTERS[i]}) {o}" for i, o in enumerate(options)]
    return "\n".join(lines)


GPQA_INSTRUCTION = "Think step by step, then end your answer with a line of the form 'Answer: X', where X is one of the option letters."


# --------------------------------------------------------------------------- grading


def _fast_math(gold: str, pred: str) -> bool | None:
    """Decide without math-verify when that is exact: both integers (compared as digit strings,
    whatever their length), or identical after normalization. None: undecided (ask math-verify)."""
    gi, pi = integer_key(gold), integer_key(pred)
    if gi is not None and pi is not None:
        return gi == pi
    if normalize_math(gold) == normalize_math(pred):
        return True
    if gi is not None and len(pred) > 2000 and re.fullmatch(r"[\d\s,.+-]+", pred):
        return False  # a runaway number (a model looping on digits) is not worth a worker's time
    return None


def _extract(grader: str, region: str, extract: str) -> str | None:
    if grader == "math":
        return extract_math(region, extract)
    if grader == "gsm8k":
        boxed = last_boxed(region)
        if boxed is not None:
            num = last_number(boxed)
            return num if num is not None else boxed
        marked = gsm8k_marker(region)
        return marked if marked is not None else last_number(region)
    if grader == "gpqa":
        return extract_letter(region)
    if grader == "triviaqa":
        return extract_short_answer(region)
    if grader == "exact":
        boxed = last_boxed(region)
        return boxed if boxed is not None else region.strip()
    raise ValueError(f"unknown grader {grader!r}")


def _compare(grader: str, gold: str, ans: str) -> bool:
    """Correctness for the graders that never need math-verify."""
    if grader == "gsm8k":
        g, p = _decimal(gold), _decimal(ans)
        return g is not None and p is not None and g == p
    if grader == "gpqa":
        return ans.strip().upper() == gold.strip().upper()
    if grader == "triviaqa":
        aliases = json.loads(gold) if gold.startswith("[") else [gold]
        norm = normalize_trivia(ans)
        return norm != "" and norm in {normalize_trivia(str(a)) for a in aliases}
    return " ".join(ans.split()) == " ".join(gold.split())  # exact


def check_options(grader: str, extract: str) -> None:
    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r} (one of {', '.join(GRADERS)})")
    if extract not in EXTRACT_RULES:
        raise ValueError(f"unknown extraction rule {extract!r} (one of {', '.join(EXTRACT_RULES)})")


def grade_many(grader: str, requests: Sequence[GradeRequest], pool: VerifyPool | None = None,
               workers: int = 2, timeout_s: float = 10.0, extract: str = "strict") -> list[Graded]:
    """Grade a batch of samples. Only math answers that the fast paths cannot decide reach
    math-verify; identical (gold, answer) pairs are verified once. Never raises for a bad
    completion: what cannot be compared is an ``error`` status."""
    check_options(grader, extract)
    out: list[Graded | None] = [None] * len(requests)
    pending: dict[tuple[str, str], list[int]] = {}
    extracted: list[str | None] = [None] * len(requests)
    for i, r in enumerate(requests):
        region = answer_region(r.completion, r.think, r.finish_reason)
        if region is None:
            out[i] = Graded(None, "truncated", False)
            continue
        try:
            ans = _extract(grader, region, extract)
        except Exception as e:  # noqa: BLE001 - a bug must cost one sample, not the run
            out[i] = Graded(None, "error", False, f"extraction failed: {type(e).__name__}: {e}"[:300])
            continue
        extracted[i] = ans
        if ans is None or ans == "":
            status = "truncated" if r.finish_reason == "length" else "no_answer"
            out[i] = Graded(None, status, False)
            continue
        try:
            if grader == "math":
                fast = _fast_math(r.gold, ans)
                if fast is None:
                    pending.setdefault((r.gold, ans), []).append(i)
                else:
                    out[i] = Graded(ans, "ok", fast)
            else:
                out[i] = Graded(ans, "ok", _compare(grader, r.gold, ans))
        except Exception as e:  # noqa: BLE001 - e.g. a gold that is not valid JSON
            out[i] = Graded(ans, "error", False, f"{type(e).__name__}: {e}"[:300])
    if pending:
        keys = list(pending)
        own = pool is None
        p = pool or VerifyPool(workers=min(workers, len(keys)), timeout_s=timeout_s)
        try:
            verdicts = p.check(keys)
        finally:
            if own:
                p.close()
        for key, v in zip(keys, verdicts):
            for i in pending[key]:
                out[i] = Graded(extracted[i], v.status, v.correct, v.detail)
    return out  # type: ignore[return-value]  (every slot is filled above)


def grade_one(grader: str, completion: str, gold: str, finish_reason: str = "stop", think: bool = True,
              pool: VerifyPool | None = None, extract: str = "strict") -> Graded:
    return grade_many(grader, [GradeRequest(completion, gold, finish_reason, think)], pool=pool, extract=extract)[0]


def statuses(graded: Iterable[Graded]) -> dict[str, int]:
    """Count of each status, every status present (zeros included), in :data:`STATUSES` order."""
    counts = dict.fromkeys(STATUSES, 0)
    for g in graded:
        counts[g.status] = counts.get(g.status, 0) + 1
    return counts
