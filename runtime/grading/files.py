"""Grading completions that came from anywhere: ``sparkql grade FILE`` and ``sparkql.grade()``.

Torch-free. Each row has ``completion`` and ``gold``, and optionally ``finish_reason``
(``length`` means cut at the token limit), ``think`` (whether a ``</think>`` block was
expected) and ``id``; other fields are passed through. A row that cannot be graded (a missing
field, a gold that is not text) is a SparkError naming the file and the row, before anything
is graded: a half-graded file is worse than none.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from sparkql.errors import SparkError, Span
from sparkql.runtime.grading.grader import (
    EXTRACT_RULES,
    GRADERS,
    STATUSES,
    GradeRequest,
    VerifyPool,
    grade_many,
    statuses,
)

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
OUTPUT_FIELDS = ("extracted", "status", "correct")


@dataclass
class GradeResult:
    """The graded rows (each input row plus ``extracted``, ``status``, ``correct``) and counts."""

    rows: list[dict]
    grader: str
    extract: str
    counts: dict[str, int] = field(default_factory=dict)
    """{status: number of rows} for every status (zeros included)."""

    @property
    def correct(self) -> int:
        return sum(1 for r in self.rows if r["correct"])

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.rows) if self.rows else 0.0

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def summary(self) -> str:
        head = (f"graded {len(self.rows)} row(s) with grader {self.grader}, extract {self.extract}: "
                f"{self.correct} correct (accuracy {self.accuracy:.3f})")
        names = {"no_answer": "no answer"}
        return head + "\nstatuses: " + " · ".join(f"{names.get(s, s)} {self.counts.get(s, 0)}" for s in STATUSES)

    def write_jsonl(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for line in self.jsonl_lines():
                f.write(line + "\n")

    def jsonl_lines(self) -> Iterator[str]:
        for r in self.rows:
            yield json.dumps(r, ensure_ascii=False, default=str)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Row:
    number: int
    """1-based row number."""
    line: int | None
    """Line of the file where the row starts (JSONL, CSV), for the error location."""
    data: Any


def _bad(path: str | None, row: _Row, message: str, hint: str | None = None) -> SparkError:
    span = Span(line=row.line, column=1, end_line=row.line, end_column=2) if row.line else None
    return SparkError(f"row {row.number}: {message}", span=span, file=path, hint=hint)


def _read(path: Path, fmt: str | None) -> Iterator[_Row]:
    if not path.is_file():
        raise SparkError(f"{path} does not exist", hint="give a JSONL, JSON, CSV or Parquet file of completions")
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SparkError(f"cannot tell the format of {path.name}",
                         hint="use .jsonl, .json, .csv or .parquet, or --format jsonl|json|csv|parquet")
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as f:
            n = 0
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                n += 1
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as e:
                    raise _bad(str(path), _Row(n, line_no, None), f"is not valid JSON ({e.msg})",
                               hint="one JSON object per line") from None
                yield _Row(n, line_no, data)
    elif fmt == "json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise SparkError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(data, list):
            raise SparkError(f"{path}: expected a JSON list of objects", hint="or use JSONL, one object per line")
        for i, item in enumerate(data, 1):
            yield _Row(i, None, item)
    elif fmt == "csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            reader.fieldnames  # reads the header, so line_num counts it
            line = reader.line_num + 1
            for i, rec in enumerate(reader, 1):
                yield _Row(i, line, rec)
                line = reader.line_num + 1
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for i, rec in enumerate(pq.read_table(path).to_pylist(), 1):
            yield _Row(i, None, rec)
    else:
        raise SparkError(f"unknown format {fmt!r}", hint="jsonl, json, csv or parquet")


def _truthy(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return v.strip().lower() in ("true", "1", "yes", "on")
    return None


def _gold_text(grader: str, gold: Any) -> str | None:
    """The gold as the grader stores it; None when it is not usable."""
    if grader == "triviaqa":
        if isinstance(gold, (list, tuple)) and gold and all(isinstance(a, (str, int, float)) for a in gold):
            return json.dumps([str(a) for a in gold], ensure_ascii=False)
        if isinstance(gold, str) and gold.strip().startswith("["):
            try:
                aliases = json.loads(gold)
            except json.JSONDecodeError:
                return None
            return json.dumps([str(a) for a in aliases], ensure_ascii=False) if isinstance(aliases, list) and aliases else None
    if isinstance(gold, bool) or gold is None:
        return None
    if isinstance(gold, float) and gold != gold:  # NaN: an empty cell
        return None
    if isinstance(gold, (int, float)):
        return str(int(gold)) if isinstance(gold, float) and gold.is_integer() else str(gold)
    if isinstance(gold, str) and gold.strip():
        return gold if grader != "triviaqa" else json.dumps([gold], ensure_ascii=False)
    return None


def _request(grader: str, path: str | None, row: _Row, think_default: bool) -> GradeRequest:
    rec = row.data
    if not isinstance(rec, dict):
        raise _bad(path, row, f"is {type(rec).__name__}, not an object", hint='each row: {"completion": ..., "gold": ...}')
    missing = [k for k in ("completion", "gold") if k not in rec]
    if missing:
        have = ", ".join(sorted(map(str, rec))) or "none"
        raise _bad(path, row, f"has no {' or '.join(repr(m) for m in missing)} field", hint=f"its fields: {have}")
    completion = rec["completion"]
    if completion is None:
        completion = ""
    if not isinstance(completion, str):
        raise _bad(path, row, f"'completion' is {type(completion).__name__}, not text")
    gold = _gold_text(grader, rec["gold"])
    if gold is None:
        want = "a list of aliases or a string" if grader == "triviaqa" else ("a letter" if grader == "gpqa" else "text or a number")
        raise _bad(path, row, f"'gold' is {rec['gold']!r}; it must be {want}")
    finish = rec.get("finish_reason") or "stop"
    if not isinstance(finish, str):
        raise _bad(path, row, f"'finish_reason' is {finish!r}; use stop or length")
    think = think_default
    if rec.get("think") not in (None, ""):
        think = _truthy(rec["think"])
        if think is None:
            raise _bad(path, row, f"'think' is {rec['think']!r}; use true or false")
    return GradeRequest(completion, gold, finish.strip().lower(), think)


def grade_rows(source: str | os.PathLike | Iterable[dict], grader: str = "math", extract: str = "strict",
               think: bool = True, timeout: float = 10.0, workers: int = 2, fmt: str | None = None,
               pool: VerifyPool | None = None) -> GradeResult:
    """Grade a file (JSONL, JSON, CSV, Parquet) or an iterable of dicts of completions."""
    if grader not in GRADERS:
        raise SparkError(f"unknown grader {grader!r}", hint="one of " + ", ".join(GRADERS))
    if extract not in EXTRACT_RULES:
        raise SparkError(f"unknown extraction rule {extract!r}", hint="strict or lenient")
    if isinstance(source, (str, os.PathLike)):
        path: str | None = str(source)
        rows = list(_read(Path(source), fmt))
    else:
        path = None
        rows = [_Row(i, None, rec) for i, rec in enumerate(source, 1)]
    reqs = [_request(grader, path, r, think) for r in rows]
    graded = grade_many(grader, reqs, pool=pool, workers=workers, timeout_s=timeout, extract=extract)
    out = []
    for r, g in zip(rows, graded):
        rec = {k: v for k, v in r.data.items() if k not in OUTPUT_FIELDS}
        rec.update(extracted=g.extracted, status=g.status, correct=g.correct)
        out.append(rec)
    return GradeResult(out, grader, extract, statuses(graded))
