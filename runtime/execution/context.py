"""What a step handler receives and returns.

A handler is ``def run_<kind>(step: Step, ctx: RunContext) -> StepOutput``,
registered in :mod:`sparkql.runtime.execution.handlers`. It computes its results and
returns them; the executor writes ``StepOutput.tables`` (and runs
``StepOutput.apply``) together with the step's completion mark in ONE
transaction, so a killed run loses at most the step in flight.

A long step that must keep partial progress (generation: samples are stored
as they finish) writes batches itself with ``ctx.write(tables)`` using
idempotent inserts (the ``samples`` primary key), and on resume asks the store
what it already has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # keep this module import-light
    import duckdb

    from sparkql.plan.steps import Plan, Step


Rows = Any
"""A table payload: a list of dicts, a dict of equal-length columns (lists or numpy arrays),
or a pyarrow.Table. Column names as in sparkql/store/schema.py."""


@dataclass
class StepOutput:
    tables: dict[str, Rows] = field(default_factory=dict)
    """Rows to append, per table name."""
    apply: Callable[["duckdb.DuckDBPyConnection"], None] | None = None
    """Extra statements (updates) to run inside the same transaction. Order in that transaction
    (sparkql.store.api.Store.complete_step): rows this step wrote before are deleted from the tables
    it owns, then ``apply`` runs, then ``tables`` are appended, then the completion mark."""
    summary: dict[str, Any] = field(default_factory=dict)
    """A few numbers for the log and the end-of-run summary (JSON-serialisable)."""


@dataclass
class RunContext:
    """Everything a handler may use. Built by the executor for one run."""

    plan: "Plan"
    store: Any
    """sparkql.store.Store: ``query(sql, params) -> list[tuple]`` reads, ``write(tables)`` appends
    in its own transaction (for incremental results)."""
    models: Any
    """sparkql.runtime.models.loading.ModelCache: ``get(model_ref, dtype, device) -> LoadedModel``."""
    run_id: str = ""
    progress: Any = None
    """sparkql.runtime.execution.progress.Progress or None: ``task(description, total) -> handle`` with
    ``advance(n=1)``, ``update(**fields)`` and ``close()``."""
    log: Callable[[str], None] = print
    debug: bool = False

    def query(self, sql: str, params: list | tuple | None = None) -> list[tuple]:
        return self.store.query(sql, params)

    def write(self, tables: dict[str, Rows]) -> None:
        self.store.write(tables)

    def result_of(self, key: str) -> "Step":
        return self.plan.by_key()[key]
