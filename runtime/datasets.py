"""Reading dataset files (JSONL, JSON, CSV, Parquet) with the study's role mapping.

``load_rows`` returns one dict per row whose keys are *role* names (problem,
answer, clean, corrupt, id, choices); the field names of the file are the
study's business (``dataset d = "f.jsonl" (problem = "question")``).

Every row is checked the same way at ``sparkql check`` (the compiler calls
:func:`survey`) and at run time (:func:`usable_records`): a mapped field that is
missing, null or of the wrong type (a list where text belongs, binary data, a
boolean answer) is a SparkError naming the file, the row (the line, for JSONL
and CSV) and the field, instead of the text "None" or "b'...'" in a prompt.
With ``dataset d = "..." with bad_rows = skip`` such rows are dropped instead,
and check says how many and why. Torch-free: the compiler imports it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from sparkql.errors import SparkError
from sparkql.plan.steps import DatasetRef

TEXT_ROLES = ("problem", "clean", "corrupt")

Located = tuple[str, dict]
"""(where the row is, for messages: "line 7" or "row 7"; the record)."""


def _open_error(p: Path, e: Exception) -> SparkError:
    if isinstance(e, UnicodeDecodeError):
        return SparkError(f"dataset file {p} is not UTF-8 text (byte {e.start}: {e.reason})",
                          hint="save it as UTF-8, or use Parquet for binary data")
    return SparkError(f"cannot read dataset file {p}: {getattr(e, 'strerror', None) or e}")


def _too_deep(p: Path, where: str) -> SparkError:
    return SparkError(f"{p}: {where} nests JSON lists or objects too deeply to read",
                      hint="a dataset row holds texts and numbers, not deeply nested structures")


def _looks_like_jsonl(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()][:5]
    if len(lines) < 2:
        return False
    try:
        return all(isinstance(json.loads(ln), dict) for ln in lines)
    except (ValueError, RecursionError):
        return False


def _read_jsonl(p: Path) -> list[Located]:
    rows: list[Located] = []
    with p.open(encoding="utf-8-sig") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SparkError(f"{p}: line {i} is not valid JSON ({e.msg}, column {e.colno})",
                                 hint="one JSON object per line") from None
            except RecursionError:
                raise _too_deep(p, f"line {i}") from None
            if not isinstance(rec, dict):
                raise SparkError(f"{p}: line {i} is a JSON {_kind(rec)}, not an object",
                                 hint='one JSON object per line, like {"problem": "...", "answer": "..."}')
            rows.append((f"line {i}", rec))
    return rows


def _read_json(p: Path) -> list[Located]:
    text = p.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except RecursionError:
        raise _too_deep(p, "the file") from None
    except json.JSONDecodeError as e:
        if _looks_like_jsonl(text):
            raise SparkError(f"{p} holds JSON Lines (one object per line), not one JSON document",
                             hint="rename it to .jsonl, or declare it `with format = jsonl`") from None
        raise SparkError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
                         hint="a JSON list of objects, or use JSONL (one object per line)") from None
    if isinstance(data, dict):  # {"data": [...]} or {"rows": [...]}
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        raise SparkError(f"{p}: expected a JSON list of objects", hint="or use JSONL, one object per line")
    for i, rec in enumerate(data, 1):
        if not isinstance(rec, dict):
            raise SparkError(f"{p}: row {i} is a JSON {_kind(rec)}, not an object", hint="a JSON list of objects")
    return [(f"row {i}", rec) for i, rec in enumerate(data, 1)]


def _read_csv(p: Path) -> list[Located]:
    with p.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        try:
            return [(f"line {reader.line_num}", rec) for rec in reader]
        except csv.Error as e:
            raise SparkError(f"{p}: line {reader.line_num} is not valid CSV ({e})") from None


def _read_parquet(p: Path) -> list[Located]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as e:
        raise SparkError(f"{p} is not a readable Parquet file: {e}", hint="check the file, or the dataset's format") from None
    return [(f"row {i}", rec) for i, rec in enumerate(table.to_pylist(), 1)]


_READERS = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}


def read_located(path: str | Path, fmt: str) -> list[Located]:
    """Every record of the file with where it is (for messages); SparkError on an unreadable file."""
    p = Path(path)
    if not p.is_file():
        raise SparkError(f"dataset file {p} does not exist", hint="check the path in `dataset NAME = \"...\"`")
    reader = _READERS.get(fmt)
    if reader is None:
        raise SparkError(f"{p}: unsupported dataset format {fmt!r}", hint="use .jsonl, .json, .csv or .parquet")
    try:
        return reader(p)
    except (OSError, UnicodeDecodeError) as e:
        raise _open_error(p, e) from None


def read_records(path: str | Path, fmt: str) -> list[dict]:
    return [rec for _, rec in read_located(path, fmt)]


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (bytes, bytearray)):
        return "binary value"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _value_problem(role: str, v) -> str | None:
    """Why ``v`` cannot be the value of ``role`` (None when it can)."""
    if v is None:
        return "is null"
    if role in TEXT_ROLES:
        return None if isinstance(v, str) else f"is a {_kind(v)}, not text"
    if role in ("answer", "id"):
        return None if isinstance(v, str) or _is_number(v) else f"is a {_kind(v)}, not text or a number"
    if role == "choices":
        if isinstance(v, str) and v.lstrip().startswith("["):  # a JSON list kept as text (CSV exports)
            try:
                v = json.loads(v)
            except (ValueError, RecursionError):
                return "is text that starts with [ but is not a JSON list"
        if isinstance(v, str):
            return None
        if isinstance(v, (list, tuple)) and all(isinstance(c, str) or _is_number(c) for c in v):
            return None
        return f"is a {_kind(v)}, not a list of texts"
    return None


def record_problem(ref: DatasetRef, rec: dict) -> str | None:
    """What is wrong with a record for ``ref``'s mapped roles, as `field "x" (role r) is null`; None if nothing."""
    for role, fld in ref.roles.items():
        if fld not in rec:
            return f'has no field "{fld}" (role {role})'
        why = _value_problem(role, rec[fld])
        if not why and role == "choices" and ref.grader == "gpqa" and isinstance(rec[fld], str) \
                and not rec[fld].lstrip().startswith("["):
            why = "is one text, but GPQA's choices are a list (a JSON list of the incorrect options)"
        if why:
            return f'field "{fld}" (role {role}) {why}'
    return None


def _bad_row_error(ref: DatasetRef, where: str, problem: str) -> SparkError:
    return SparkError(f"{ref.path}: {where}: {problem}",
                      hint=f"fix the row, or drop such rows: dataset {ref.name} = \"...\" with bad_rows = skip")


@dataclass
class Survey:
    """What the compiler learns from reading a whole dataset."""

    n_rows: int
    """Rows a run will use (after dropping bad ones)."""
    dropped: list[str] = field(default_factory=list)
    """`line 7: field "answer" (role answer) is null` for each dropped row."""


def usable_indexed(ref: DatasetRef, located: list[Located] | None = None) -> list[tuple[int, dict]]:
    """(position in the file, record) of the rows a run uses: every row, or SparkError at the first
    bad one; with ``bad_rows = skip`` the good ones only."""
    located = read_located(ref.path, ref.format) if located is None else located
    out = []
    for i, (where, rec) in enumerate(located):
        problem = record_problem(ref, rec)
        if problem is None:
            out.append((i, rec))
        elif ref.bad_rows != "skip":
            raise _bad_row_error(ref, where, problem)
    return out


def usable_records(ref: DatasetRef) -> list[dict]:
    return [rec for _, rec in usable_indexed(ref)]


def survey(ref: DatasetRef, located: list[Located]) -> Survey:
    """Check every row as a run will (SparkError at the first bad row unless ``bad_rows = skip``)."""
    kept = usable_indexed(ref, located)
    good = {i for i, _ in kept}
    dropped = [f"{where}: {record_problem(ref, rec)}" for i, (where, rec) in enumerate(located) if i not in good]
    return Survey(n_rows=len(kept), dropped=dropped)


def load_rows(ref: DatasetRef, roles: tuple[str, ...] | None = None) -> list[dict]:
    """Rows of ``ref`` keyed by role. ``roles``: the roles the caller needs (all mapped ones by default);
    a needed role that is not mapped is a SparkError. ``id`` defaults to the row's position in the file."""
    need = roles if roles is not None else tuple(ref.roles)
    for role in need:
        if role not in ref.roles and role != "id":
            raise SparkError(
                f"dataset {ref.name} has no `{role}` role",
                hint=f"map it: dataset {ref.name} = \"...\" ({role} = \"<field>\")",
            )
    out = []
    for i, rec in usable_indexed(ref):
        row = {role: rec[ref.roles[role]] for role in need if role in ref.roles}
        rid = rec[ref.roles["id"]] if "id" in ref.roles else rec.get("id")
        row["id"] = str(rid) if isinstance(rid, str) or _is_number(rid) else str(i)
        out.append(row)
    return out
