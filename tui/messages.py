"""Messages the TUI's views send each other (dataclasses, as in harlequin/posting).

Views never reach into each other: a view posts one of these and the app
routes it (switch tab, push a screen, reload).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class RunSelected(Message):
    """A run (or ``data.ALL_RUNS``) was chosen in the runs list."""

    run_id: str


@dataclass
class OpenHeadMap(Message):
    """Show the head map of a circuit (``kind='circuit'``) or head set (``kind='set'``, id ``set_key|model_id``)."""

    kind: str
    source_id: str


@dataclass
class OpenHead(Message):
    """Open a head's detail, in the context of the circuit the map shows."""

    layer: int
    head: int
    circuit_id: str | None
    dataset: str | None
    context: str


@dataclass
class OpenCohort(Message):
    cohort_key: str


@dataclass
class OpenEvals(Message):
    """Switch to the evaluations tab with this eval highlighted."""

    eval_id: str


@dataclass
class OpenSamples(Message):
    eval_id: str


@dataclass
class OpenDiff(Message):
    """Newly correct / newly incorrect problems going from eval ``a`` to eval ``b``."""

    a: str
    b: str


@dataclass
class StoreChanged(Message):
    """A writer committed new results (or the store became readable again)."""


@dataclass
class StoreBusy(Message):
    """A writer holds the file; the app shows a note and keeps polling."""

    detail: str
