"""sparkql: a declarative language and compiler for mechanistic studies of reasoning models.

The top-level package stays light (no torch): ``sparkql.run`` and
``sparkql.connect`` import what they need when called.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "run", "connect", "SparkError"]

from sparkql.errors import SparkError


def run(path_or_text: str, db: str = "sparkql.duckdb", **options):
    """Run a study (a file path or study text) into the DuckDB file ``db``; returns the run summary."""
    from sparkql.runtime.execution.api import run as _run

    return _run(path_or_text, db=db, **options)


def connect(db: str = "sparkql.duckdb"):
    """A read-only DuckDB connection to a results store, for notebooks: it runs queries only and
    writes no file (see docs/store.md, "Read-only means read-only")."""
    from sparkql.store.api import connect as _connect

    return _connect(db)
