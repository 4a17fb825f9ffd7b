"""The SQL tab's query: a user's SQL, queries only, with a row limit and a time limit."""

from __future__ import annotations

import threading

import duckdb

from sparkql.store.readonly import QueryRefused, check_query
from sparkql.tui.data.common import Table, query_table

__all__ = ["QueryRefused", "QueryTimeout", "run_sql"]

SQL_TAB_HINT = "the SQL tab runs queries only; change the store with `sparkql sql --write` in a shell"


class QueryTimeout(Exception):
    """A user's query ran past its time limit and was interrupted."""


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, limit: int = 1000, timeout: float | None = 15.0) -> Table:
    """Run a user's query on the read-only connection; at most ``limit`` rows come back.

    Only queries run (:func:`sparkql.store.readonly.check_query`): anything
    else raises :class:`QueryRefused` before a statement runs. A query still running after ``timeout`` seconds is interrupted: while it
    runs the file stays open, and a ``sparkql run`` writing to the same store
    would wait for it at its next commit.
    """
    if not sql.strip().strip(";").strip():
        return Table([], [])  # an empty box: nothing to run, nothing to say
    check_query(sql, hint=SQL_TAB_HINT)
    timer = threading.Timer(timeout, con.interrupt) if timeout else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        return query_table(con, sql, limit=limit)
    except duckdb.InterruptException as e:
        raise QueryTimeout(f"query interrupted after {timeout:g} s (it would block a running study's writes)") from e
    finally:
        if timer is not None:
            timer.cancel()
