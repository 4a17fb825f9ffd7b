"""Reading dataset files (JSONL, JSON, CSV, Parquet) with the study's role mapping.

``load_rows`` returns one dict per row whose keys are *role* names (problem,
answer, clean, corrupt, id, choices); the field names of the file are the
study's business (``dataset d = "f.jsonl" (problem = "question")``). A
missing field is a SparkError naming the file, the row and the field.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sparkql.errors import SparkError
from sparkql.plan.steps import DatasetRef


def read_records(path: str | Path, fmt: str) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise SparkError(f"dataset file {p} does not exist", hint="check the path in `dataset NAME = \"...\"`")
    if fmt == "jsonl":
        rows = []
        with p.open(encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SparkError(f"{p}: row {i} is not valid JSON ({e.msg})", hint="one JSON object per line") from None
        return rows
    if fmt == "json":
        data = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(data, dict):  # {"data": [...]} or {"rows": [...]}
            data = next((v for v in data.values() if isinstance(v, list)), None)
        if not isinstance(data, list):
            raise SparkError(f"{p}: expected a JSON list of objects", hint="or use JSONL, one object per line")
        return data
    if fmt == "csv":
        with p.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(p).to_pylist()
    raise SparkError(f"{p}: unsupported dataset format {fmt!r}", hint="use .jsonl, .json, .csv or .parquet")


def load_rows(ref: DatasetRef, roles: tuple[str, ...] | None = None) -> list[dict]:
    """Rows of ``ref`` keyed by role. ``roles``: the roles the caller needs (all mapped ones by default);
    a needed role missing from a row is a SparkError. ``id`` defaults to the row index."""
    records = read_records(ref.path, ref.format)
    need = roles if roles is not None else tuple(ref.roles)
    out = []
    for i, rec in enumerate(records):
        row = {}
        for role in need:
            field = ref.roles.get(role)
            if field is None:
                if role == "id":
                    row["id"] = str(i)
                    continue
                raise SparkError(
                    f"dataset {ref.name} has no `{role}` role",
                    hint=f"map it: dataset {ref.name} = \"...\" ({role} = \"<field>\")",
                )
            if field not in rec:
                raise SparkError(
                    f"{ref.path}: row {i + 1} has no field `{field}` (role {role})",
                    hint=f"fields in that row: {', '.join(sorted(map(str, rec)))}",
                )
            row[role] = rec[field]
        if "id" in row:
            row["id"] = str(row["id"])
        elif "id" not in need:
            row["id"] = str(rec.get(ref.roles.get("id", "id"), i))
        out.append(row)
    return out
