"""sparkql: a declarative language and compiler for mechanistic studies of reasoning models.

The top-level package stays light (no torch): ``sparkql.run``,
``sparkql.connect`` and ``sparkql.grade`` import what they need when called.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "run", "connect", "grade", "SparkError"]

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


def grade(source, grader: str = "math", extract: str = "strict", think: bool = True, timeout: float = 10.0,
          workers: int = 2, format: str | None = None):
    """Grade completions from anywhere: a JSONL/JSON/CSV/Parquet file, or an iterable of dicts
    with ``completion`` and ``gold`` (optional ``finish_reason``, ``think``, ``id``). Returns a
    GradeResult: ``.rows`` (each input row plus ``extracted``, ``status``, ``correct``),
    ``.counts`` (per status), ``.accuracy``, ``.summary()``, ``.write_jsonl(path)``.
    Torch-free; safe to call from a script without an ``if __name__ == "__main__"`` guard."""
    from sparkql.runtime.grading.files import grade_rows

    return grade_rows(source, grader=grader, extract=extract, think=think, timeout=timeout, workers=workers, fmt=format)
