"""Read-only means read-only: queries run, nothing else does (torch-free).

A read-only DuckDB connection keeps the *store* unchanged, but DuckDB would
still run ``COPY ... TO '<the store's own path>'`` (which replaces the file),
``EXPORT DATABASE``, ``ATTACH 'other.duckdb' (READ_WRITE)`` and so on. So
``sparkql sql`` without ``--write``, the TUI's SQL tab and
:func:`sparkql.connect` split the text into statements with DuckDB's own
parser (``extract_statements``) and refuse the whole text, before running any
of it, unless every statement is a query: ``SELECT``/``WITH``/``FROM``/
``VALUES``/``DESCRIBE``/``SHOW``/``SUMMARIZE``/``PIVOT ... IN (...)`` (all of
type SELECT), or ``EXPLAIN [ANALYZE]`` of such a query. ``PRAGMA`` and
``CALL`` are refused too (they run arbitrary functions; ``SELECT * FROM
f()`` reads the same). The locked configuration of the connection
(:data:`sparkql.store.connection.READER_CONFIG`) closes what a query itself
could reach (extensions, profiling or log files).

:class:`QueryOnlyConnection` is the notebook face of the same rule: a
DuckDB connection whose SQL entry points check first, and whose methods that
write files (``to_csv``, ``to_parquet``, ...) are refused.
"""

from __future__ import annotations

from typing import Any, Callable

import duckdb

from sparkql.errors import SparkError, Span

ALLOWED = "SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, or EXPLAIN of one of them"


class QueryRefused(SparkError):
    """A statement that is not a query, given where only queries may run."""


def check_query(sql: str, *, hint: str | None = None) -> list[str]:
    """The statements of ``sql`` (texts), when every one is a query; else :class:`QueryRefused`.

    Raises ``duckdb.ParserException`` for text DuckDB cannot parse (the
    caller words it), and :class:`QueryRefused` for an empty text. The error
    points at the refused statement (``<query>:line:col`` and a caret).
    """
    statements = duckdb.extract_statements(sql)
    if not statements:
        raise QueryRefused("no SQL statement to run", hint='give a query, e.g. "SELECT * FROM runs"')
    pos = 0
    for st in statements:
        start, length = _locate(sql, st.query, pos)
        pos = start + length
        if not _is_query(st):
            word = _statement_word(st)
            raise QueryRefused(
                f"read-only: {word} is not a query (queries: {ALLOWED}); nothing was run",
                span=_span(sql, start, length), source=sql, file="<query>", hint=hint,
            )
    return [st.query for st in statements]


def _is_query(st: Any) -> bool:
    if st.type == duckdb.StatementType.SELECT:
        return True
    if st.type == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs what it explains: the explained statement must be a query too.
        inner = _explained(st.query)
        if inner is None:
            return False
        try:
            parts = duckdb.extract_statements(inner)
        except duckdb.Error:
            return False
        return len(parts) == 1 and _is_query(parts[0])
    return False


def _explained(text: str) -> str | None:
    """The statement after ``EXPLAIN``, ``EXPLAIN ANALYZE`` or ``EXPLAIN (options)``; None if unsure."""
    tokens = duckdb.tokenize(text)
    words = [(off, t) for off, t in tokens if t != duckdb.token_type.comment]
    if not words or text[words[0][0]:words[0][0] + 7].upper() != "EXPLAIN":
        return None
    i = 1
    if i < len(words) and text[words[i][0]:].upper().startswith("ANALYZE"):
        i += 1
    elif i < len(words) and text[words[i][0]] == "(":
        depth = 0
        while i < len(words):
            ch = text[words[i][0]]
            if words[i][1] == duckdb.token_type.operator and ch in "()":
                depth += 1 if ch == "(" else -1
                if depth == 0:
                    i += 1
                    break
            i += 1
        else:
            return None
    if i >= len(words):
        return None
    return text[words[i][0]:]


def _statement_word(st: Any) -> str:
    """What to call a refused statement: its type, in the words a user typed."""
    name = st.type.name
    if name == "EXPLAIN":
        inner = _explained(st.query)
        try:
            parts = duckdb.extract_statements(inner) if inner else []
        except duckdb.Error:
            parts = []
        return "EXPLAIN of " + (_statement_word(parts[0]) if len(parts) == 1 else "several statements")
    return {"LOAD": "LOAD/INSTALL", "SET": "SET/RESET/USE", "VACUUM": "VACUUM/ANALYZE", "MULTI": "a multi-statement command (PIVOT without IN (...)?)"}.get(name, name)


def _locate(sql: str, piece: str, pos: int) -> tuple[int, int]:
    """Offset and length of a statement's first word in the whole text (DuckDB gives the text, not the offset)."""
    i = sql.find(piece, pos)
    base = i if i >= 0 else pos
    words = [off for off, t in duckdb.tokenize(piece) if t != duckdb.token_type.comment]
    if not words:
        return base, 1
    first = words[0]
    end = first
    while end < len(piece) and (piece[end].isalnum() or piece[end] == "_"):
        end += 1
    return base + first, max(end - first, 1)


def _span(sql: str, start: int, length: int) -> Span:
    line = sql.count("\n", 0, start) + 1
    col = start - (sql.rfind("\n", 0, start) + 1) + 1
    end = start + length
    end_line = sql.count("\n", 0, end) + 1
    end_col = end - (sql.rfind("\n", 0, end) + 1) + 1
    return Span(line=line, column=col, end_line=end_line, end_column=end_col, start_pos=start, end_pos=end)


# --- the notebook connection ---------------------------------------------------------

NOTEBOOK_HINT = ("sparkql.connect() runs queries only; to change the store use "
                 "sparkql.store.api.connect(db, read_only=False) or `sparkql sql --write`")

FILE_WRITERS = {
    "to_csv", "write_csv", "to_parquet", "write_parquet",  # relation -> a file
    "install_extension", "load_extension",  # ~/.duckdb, and functions that may write
    "enable_profiling",  # may write the profile to a file
}
"""Methods refused on a :class:`QueryOnlyConnection` and its relations."""


def _refuse(name: str) -> Callable[..., Any]:
    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise QueryRefused(
            f"{name}() writes a file, and this connection is read-only",
            hint="fetch the result (.df(), .arrow(), .fetchall()) and write it from Python, "
                 "or use `sparkql export` / `sparkql sql --out`",
        )

    return refused


def _wrap(value: Any) -> Any:
    if isinstance(value, duckdb.DuckDBPyRelation):
        return QueryOnlyRelation(value)
    if isinstance(value, duckdb.DuckDBPyConnection):
        return QueryOnlyConnection(value)
    return value


class _Guarded:
    """Delegates to a DuckDB object; relations and connections that come back are guarded too."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        object.__setattr__(self, "_obj", obj)

    def __getattr__(self, name: str) -> Any:
        if name in FILE_WRITERS:
            return _refuse(name)
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return _wrap(attr(*args, **kwargs))

        call.__doc__ = getattr(attr, "__doc__", None)
        return call

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._obj)) - FILE_WRITERS)

    def __repr__(self) -> str:
        return repr(self._obj)

    def __str__(self) -> str:
        return str(self._obj)


class QueryOnlyRelation(_Guarded):
    """A DuckDB relation whose ``query()`` runs queries only."""

    __slots__ = ()

    def query(self, virtual_table_name: str, sql_query: str) -> Any:
        check_query(sql_query, hint=NOTEBOOK_HINT)
        return _wrap(self._obj.query(virtual_table_name, sql_query))

    def __len__(self) -> int:
        return len(self._obj)

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._obj[key])

    def __contains__(self, key: Any) -> bool:
        return key in self._obj

    def __arrow_c_stream__(self, *args: Any, **kwargs: Any) -> Any:
        return self._obj.__arrow_c_stream__(*args, **kwargs)


class QueryOnlyConnection(_Guarded):
    """A read-only, locked DuckDB connection that runs queries only (what :func:`sparkql.connect` returns).

    ``execute``/``executemany``/``sql``/``query``/``from_query`` check the SQL
    with :func:`check_query` first; everything else is DuckDB's own
    connection (``.fetchall()``, ``.df()``, ``read_csv``, ``register``, ...).
    """

    __slots__ = ()

    def execute(self, query: str, parameters: Any = None) -> "QueryOnlyConnection":
        check_query(query, hint=NOTEBOOK_HINT)
        self._obj.execute(query, parameters)
        return self

    def executemany(self, query: str, parameters: Any = None) -> "QueryOnlyConnection":
        check_query(query, hint=NOTEBOOK_HINT)
        self._obj.executemany(query, parameters)
        return self

    def sql(self, query: str, **kwargs: Any) -> Any:
        check_query(query, hint=NOTEBOOK_HINT)
        return _wrap(self._obj.sql(query, **kwargs))

    query = sql
    from_query = sql

    def __enter__(self) -> "QueryOnlyConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._obj.close()
