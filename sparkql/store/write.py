"""Bulk appends into the store: every payload becomes one Arrow table and one
``INSERT ... BY NAME SELECT`` (DuckDB reads Arrow without copying row by row).

Payloads (what handlers return, see sparkql/runtime/execution/context.py ``Rows``): a
list of dicts, a dict of equal-length columns (lists or numpy arrays), or a
``pyarrow.Table``. Columns are matched by name; columns the payload lacks are
NULL. Tables with a primary key take ``INSERT OR IGNORE`` for ``samples`` (a
resumed generation must never overwrite a graded sample with an ungraded one)
and ``INSERT OR REPLACE`` for the others (the newest description of a model,
run or eval wins).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sparkql.store.schema import TABLES

_IGNORE_ON_CONFLICT = {"samples"}
_CONST_MIN_ROWS = 1024
_counter = itertools.count()


def _columns(ddl: str) -> list[str]:
    body = ddl[ddl.index("(") + 1 : ddl.rindex(")")]
    cols = []
    for line in body.splitlines():
        line = line.split("--")[0].strip()
        m = re.match(r"([a-z_][a-z0-9_]*)\s+[A-Z]", line)
        if m and m.group(1) != "PRIMARY":
            cols.append(m.group(1))
    return cols


COLUMNS: dict[str, list[str]] = {name: _columns(ddl) for name, ddl in TABLES.items()}
HAS_PRIMARY_KEY = {name for name, ddl in TABLES.items() if "PRIMARY KEY" in ddl}


def to_arrow(payload: Any) -> pa.Table:
    """Any supported payload -> a pyarrow.Table."""
    if isinstance(payload, pa.Table):
        return payload
    if isinstance(payload, pa.RecordBatch):
        return pa.Table.from_batches([payload])
    if isinstance(payload, dict):
        return pa.table({k: _array(v) for k, v in payload.items()})
    if isinstance(payload, (list, tuple)):
        if not payload:
            return pa.table({})
        # Not pa.Table.from_pylist: it takes the columns of the first row only, and handlers
        # legitimately leave out keys that are NULL for some rows (layer of the input node).
        keys: dict[str, None] = {}
        for row in payload:
            keys.update(dict.fromkeys(row))
        return pa.table({k: pa.array([row.get(k) for row in payload]) for k in keys})
    if hasattr(payload, "to_arrow"):  # polars
        return payload.to_arrow()
    if hasattr(payload, "columns") and hasattr(payload, "to_dict"):  # pandas
        return pa.Table.from_pandas(payload, preserve_index=False)
    raise TypeError(f"cannot write a {type(payload).__name__}: use a list of dicts, a dict of columns or a pyarrow.Table")


def _array(v: Any) -> pa.Array:
    if isinstance(v, (pa.Array, pa.ChunkedArray)):
        return v
    return pa.array(v)


def insert(con, table: str, payload: Any) -> int:
    """Append ``payload`` to ``table`` on ``con`` (inside the caller's transaction); returns rows."""
    if table not in COLUMNS:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(sorted(COLUMNS))}")
    data = to_arrow(payload)
    if data.num_rows == 0:
        return 0
    unknown = [c for c in data.column_names if c not in COLUMNS[table]]
    if unknown:
        raise ValueError(f"table {table} has no column(s) {', '.join(unknown)}; columns: {', '.join(COLUMNS[table])}")
    verb = "INSERT"
    if table in HAS_PRIMARY_KEY:
        verb = "INSERT OR IGNORE" if table in _IGNORE_ON_CONFLICT else "INSERT OR REPLACE"
    n = data.num_rows
    # A long string column holding one value (the circuit_id of 183,555 edges) is sent as one
    # parameter instead: DuckDB then stores a constant vector rather than hashing n copies.
    select, params = [], []
    for col in list(data.column_names):
        arr = data.column(col)
        if n >= _CONST_MIN_ROWS and pa.types.is_string(arr.type) and arr.null_count == 0:
            mm = pc.min_max(arr)
            if mm["min"].as_py() == mm["max"].as_py():
                select.append(f'?::VARCHAR AS "{col}"')
                params.append(mm["min"].as_py())
                data = data.drop_columns([col])
                continue
        select.append(f'"{col}"')
    name = f"_sparkql_payload_{next(_counter)}"
    if data.num_columns == 0:  # every column constant: keep the row count
        data = pa.table({"_n": pa.nulls(n, pa.int8())})
    con.register(name, data)
    try:
        con.execute(f"{verb} INTO {table} BY NAME SELECT {', '.join(select)} FROM {name}", params)
    finally:
        con.unregister(name)
    return n


def insert_all(con, tables: dict[str, Any]) -> dict[str, int]:
    """Append every table of a StepOutput; returns rows written per table."""
    return {t: insert(con, t, rows) for t, rows in (tables or {}).items()}
