"""Grading completions (docs/evaluation.md).

Torch-free: the CLI's ``regrade`` and the TUI use it without loading a model.

The pipeline for one sample is

1. **answer region**: with thinking on, the text after the last ``</think>``;
   a completion with no ``</think>`` that was cut at ``max_tokens`` is
   *truncated* (counted wrong, and counted apart in the metrics). A
   completion with no ``</think>`` that stopped on its own is graded whole:
   models whose chat template has no thinking block (Qwen2.5-Math-Instruct,
   the paper's base model) never write one.
2. **extraction** by grader: ``math`` the last ``\\boxed{}`` (brace matched);
   ``gsm8k`` the boxed answer or else the last number; ``gpqa`` an
   ``Answer: X`` letter (or a boxed letter); ``triviaqa`` the boxed answer,
   ``answer: ...`` or a short last line; ``exact`` the boxed answer or the
   whole region.
3. **comparison**: cheap exact paths in-process (integers for AIME, normalized
   strings); otherwise math-verify, with the gold answer wrapped in ``$...$``,
   in worker processes with a hard per-sample deadline (:class:`VerifyPool`),
   so a pathological expression (``10^{10^{10}}``) costs one timeout, not the run.

Statuses: ``ok`` (an answer was extracted and compared), ``no_answer``,
``truncated``, ``timeout`` (math-verify exceeded its deadline; counted wrong),
``error`` (math-verify raised).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import re
import string
import time
from dataclasses import dataclass
from multiprocessing.connection import wait as mp_wait
from typing import Iterable, Sequence

GRADERS = ("math", "gsm8k", "triviaqa", "gpqa", "exact")
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Graded:
    extracted: str | None
    status: str
    """ok | no_answer | truncated | timeout | error"""
    correct: bool


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
        return completion[idx + len("</think>"):]
    if think and finish_reason == "length":
        return None
    return completion


# --------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched; ``\\boxed 5``
    (no braces) takes the next token. An unclosed last box (cut mid-answer) falls back to the
    one before it; None when there is none."""
    starts = [m for m in _BOX_RE.finditer(text)]
    for m in reversed(starts):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                c = text[j]
                if c == "\\":  # an escaped character (\{, \}) never opens or closes a group
                    j += 2
                    continue
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1:j].strip()
                j += 1
            continue  # unclosed: try an earlier box
        if m.group(0).endswith(" ") or m.group(0).endswith("\t"):
            tok = re.match(r"[^\s$]+", text[i:])
            if tok:
                return tok.group(0).rstrip(".,")
    return None


_NUMBER_RE = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_number(text: str) -> str | None:
    found = _NUMBER_RE.findall(text)
    if not found:
        return None
    return found[-1].replace("$", "").rstrip(".")


_ANSWER_LETTER_RE = re.compile(r"answer\s*(?:is)?\s*[:：]?\s*\(?\*{0,2}\s*([A-J])\b", re.IGNORECASE)


def extract_letter(text: str, n_options: int = 4) -> str | None:
    """``Answer: X`` (last occurrence), else a boxed letter like ``\\boxed{B}`` or ``\\boxed{\\text{(B)}}``."""
    valid = LETTERS[:n_options]
    hits = [m.group(1).upper() for m in _ANSWER_LETTER_RE.finditer(text)]
    hits = [h for h in hits if h in valid]
    if hits:
        return hits[-1]
    boxed = last_boxed(text)
    if boxed is not None:
        m = re.fullmatch(r"\s*(?:\\text\{)?\(?\s*([A-J])\s*\)?\}?\s*", boxed)
        if m and m.group(1).upper() in valid:
            return m.group(1).upper()
    return None


_ANSWER_PHRASE_RE = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*(.+)", re.IGNORECASE)


def extract_short_answer(text: str) -> str | None:
    """Free-text answers (TriviaQA): boxed, else ``answer: ...``/``the answer is ...`` (last),
    else the last non-empty line when it is short (<= 12 words)."""
    boxed = last_boxed(text)
    if boxed is not None:
        return _strip_text_macro(boxed)
    phrases = _ANSWER_PHRASE_RE.findall(text)
    if phrases:
        return phrases[-1].strip().strip("*").strip()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if lines and len(lines[-1].split()) <= 12:
        return lines[-1]
    return None


def _strip_text_macro(s: str) -> str:
    m = re.fullmatch(r"\s*\\(?:text|textbf|mathrm)\{(.*)\}\s*", s, flags=re.S)
    return m.group(1) if m else s


# --------------------------------------------------------------------------- normalization

_INT_RE = re.compile(r"[+-]?\d+")


def normalize_math(s: str) -> str:
    """Light, meaning-preserving cleanup used for the fast paths (not for math-verify's input)."""
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\(?:text|textbf|mathrm)\{\s*\}", "", s)
    s = s.replace("\\!", "").replace("\\,", "").replace("\\ ", "").replace("\\left", "").replace("\\right", "")
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    return s


def as_integer(s: str) -> int | None:
    """``"070"`` -> 70, ``"1,000"`` -> 1000, ``"12."`` -> 12; None for anything else."""
    t = normalize_math(s)
    t = re.sub(r"^\\text\{(.*)\}$", r"\1", t)
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", t):
        t = t.replace(",", "")
    if _INT_RE.fullmatch(t):
        return int(t)
    return None


def normalize_trivia(s: str) -> str:
    """The TriviaQA/SQuAD normalization: lowercase, drop punctuation and articles, squash spaces."""
    s = s.lower().replace("_", " ")
    s = "".join(ch for ch in s if ch not in set(string.punctuation) | {"‘", "’", "´", "`"})
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _number_value(s: str) -> float | None:
    t = s.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        return float(t)
    except ValueError:
        return None


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


# --------------------------------------------------------------------------- math-verify in a pool


def _mv_worker(conn) -> None:  # pragma: no cover - runs in a child process
    """Loop: receive (gold, pred) pairs, answer with (ok, value). math-verify's own SIGALRM
    timeouts are off: the parent's deadline is the only one, so a slow expression is always
    reported as ``timeout`` (not silently as wrong)."""
    import logging

    logging.disable(logging.WARNING)  # math-verify logs every parse failure
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    gold_cfg = [LatexExtractionConfig(), ExprExtractionConfig()]
    pred_cfg = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        gold, pred = msg
        try:
            g = parse(f"${gold}$", extraction_config=gold_cfg, parsing_timeout=None)
            p = parse(f"\\boxed{{{pred}}}", extraction_config=pred_cfg, parsing_timeout=None)
            ok = bool(g) and bool(p) and bool(verify(g, p, timeout_seconds=None))
            conn.send(("ok", ok))
        except BaseException as e:  # noqa: BLE001 - report, keep serving
            conn.send(("error", f"{type(e).__name__}: {e}"))


class VerifyPool:
    """math-verify in worker processes, each task under a hard wall-clock deadline.

    math-verify's own timeout is a SIGALRM, which cannot interrupt a long C-level computation
    (a huge integer power inside sympy). Here the parent waits on each worker's pipe with a
    deadline; a worker that misses it is killed and replaced, and its task is marked
    ``timeout``. Workers come from a ``forkserver`` (a clean process without torch's threads)
    and are reused across tasks.
    """

    def __init__(self, workers: int = 2, timeout_s: float = 10.0):
        self.n = max(1, workers)
        self.timeout_s = timeout_s
        self._ctx = multiprocessing.get_context("forkserver")
        # Workers fork from the server with math-verify (and sympy) already imported: a
        # replacement after a timeout starts in milliseconds, not seconds.
        self._ctx.set_forkserver_preload(["sparkql.runtime.grading.grader", "math_verify"])
        self._procs: list = []

    def _spawn(self):
        parent, child = self._ctx.Pipe()
        p = self._ctx.Process(target=_mv_worker, args=(child,), daemon=True)
        p.start()
        child.close()
        return p, parent

    def __enter__(self) -> "VerifyPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for p, conn in self._procs:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for p, conn in self._procs:
            p.join(timeout=1)
            if p.is_alive():
                p.kill()
                p.join()
            conn.close()
        self._procs = []

    def check(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, bool]]:
        """For each (gold, pred): (``ok`` | ``timeout`` | ``error``, correct)."""
        results: list[tuple[str, bool] | None] = [None] * len(pairs)
        todo = list(range(len(pairs)))[::-1]
        while len(self._procs) < min(self.n, len(pairs)):
            self._procs.append(self._spawn())
        busy: dict = {}  # conn -> (task index, deadline, slot)
        idle = list(range(len(self._procs)))
        while todo or busy:
            while todo and idle:
                slot = idle.pop()
                i = todo.pop()
                p, conn = self._procs[slot]
                conn.send(pairs[i])
                busy[conn] = (i, time.monotonic() + self.timeout_s, slot)
            now = time.monotonic()
            wait_for = max(0.0, min(d for _, d, _ in busy.values()) - now)
            ready = mp_wait(list(busy), timeout=wait_for)
            for conn in ready:
                i, _, slot = busy.pop(conn)
                try:
                    kind, value = conn.recv()
                except EOFError:  # the worker died (e.g. out of memory): replace it
                    results[i] = ("error", False)
                    self._replace(slot)
                else:
                    results[i] = ("ok", bool(value)) if kind == "ok" else ("error", False)
                idle.append(slot)
            now = time.monotonic()
            for conn, (i, deadline, slot) in list(busy.items()):
                if now >= deadline:
                    busy.pop(conn)
                    results[i] = ("timeout", False)
                    self._replace(slot)
                    idle.append(slot)
        return [r if r is not None else ("error", False) for r in results]

    def _replace(self, slot: int) -> None:
        p, conn = self._procs[slot]
        if p.is_alive():
            p.kill()
        p.join()
        conn.close()
        self._procs[slot] = self._spawn()


# --------------------------------------------------------------------------- grading


def _fast_math(gold: str, pred: str) -> bool | None:
    """Decide without math-verify when that is exact: both integers, or identical after
    normalization. None: undecided (ask math-verify)."""
    gi, pi = as_integer(gold), as_integer(pred)
    if gi is not None and pi is not None:
        return gi == pi
    if normalize_math(gold) == normalize_math(pred):
        return True
    return None


def _extract(grader: str, region: str, gold: str) -> str | None:
    if grader == "math":
        return last_boxed(region)
    if grader == "gsm8k":
        boxed = last_boxed(region)
        if boxed is not None:
            num = last_number(boxed)
            return num if num is not None else boxed
        return last_number(region)
    if grader == "gpqa":
        return extract_letter(region)
    if grader == "triviaqa":
        return extract_short_answer(region)
    if grader == "exact":
        boxed = last_boxed(region)
        return boxed if boxed is not None else region.strip()
    raise ValueError(f"unknown grader {grader!r}")


def grade_many(grader: str, requests: Sequence[GradeRequest], pool: VerifyPool | None = None,
               workers: int = 2, timeout_s: float = 10.0) -> list[Graded]:
    """Grade a batch of samples. Only math answers that the fast paths cannot decide reach
    math-verify; identical (gold, answer) pairs are verified once."""
    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r}")
    out: list[Graded | None] = [None] * len(requests)
    pending: dict[tuple[str, str], list[int]] = {}
    extracted: list[str | None] = [None] * len(requests)
    for i, r in enumerate(requests):
        region = answer_region(r.completion, r.think, r.finish_reason)
        if region is None:
            out[i] = Graded(None, "truncated", False)
            continue
        ans = _extract(grader, region, r.gold)
        extracted[i] = ans
        if ans is None or ans == "":
            status = "truncated" if r.finish_reason == "length" else "no_answer"
            out[i] = Graded(None, status, False)
            continue
        if grader == "math":
            fast = _fast_math(r.gold, ans)
            if fast is not None:
                out[i] = Graded(ans, "ok", fast)
            else:
                pending.setdefault((r.gold, ans), []).append(i)
        elif grader == "gsm8k":
            g, p = _number_value(r.gold), _number_value(ans)
            out[i] = Graded(ans, "ok", g is not None and p is not None and abs(g - p) < 1e-9 * max(1.0, abs(g)))
        elif grader == "gpqa":
            out[i] = Graded(ans, "ok", ans.strip().upper() == r.gold.strip().upper())
        elif grader == "triviaqa":
            aliases = json.loads(r.gold) if r.gold.startswith("[") else [r.gold]
            norm = normalize_trivia(ans)
            out[i] = Graded(ans, "ok", norm != "" and norm in {normalize_trivia(a) for a in aliases})
        else:  # exact
            out[i] = Graded(ans, "ok", " ".join(ans.split()) == " ".join(r.gold.split()))
    if pending:
        keys = list(pending)
        own = pool is None
        p = pool or VerifyPool(workers=min(workers, len(keys)), timeout_s=timeout_s)
        try:
            verdicts = p.check(keys)
        finally:
            if own:
                p.close()
        for key, (status, ok) in zip(keys, verdicts):
            for i in pending[key]:
                out[i] = Graded(extracted[i], status, ok)
    return out  # type: ignore[return-value]  (every slot is filled above)


def statuses(graded: Iterable[Graded]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for g in graded:
        counts[g.status] = counts.get(g.status, 0) + 1
    return counts
