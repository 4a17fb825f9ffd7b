"""Everything the TUI reads from the results store: plain SQL over DuckDB, one module per screen.

Never imports textual (tests call it directly) and never writes. Every query
function takes an open connection from :func:`connect` (read-only, locked,
held only for the query: see :mod:`.store`). The modules follow the screens
of ``sparkql.tui.screens``:

- :mod:`.store`: opening the file, store health (missing, empty, foreign,
  older schema), the fingerprint the app polls for new results;
- :mod:`.common`: the :class:`Table` result type, the study scope, the model label;
- :mod:`.runs`, :mod:`.headmap`, :mod:`.head_detail`, :mod:`.cohort`,
  :mod:`.evals`, :mod:`.samples`, :mod:`.diff`, :mod:`.sql`: the queries of
  the screen of the same name.

Screens use the names re-exported here (``from sparkql.tui import data``).
"""

from __future__ import annotations

from sparkql.tui.data.cohort import CohortView, cohort_view
from sparkql.tui.data.common import ALL_RUNS, Table
from sparkql.tui.data.diff import DiffRow, EvalDiff, eval_diff
from sparkql.tui.data.evals import STATUS_METRICS, eval_label, eval_table, intact_counterpart
from sparkql.tui.data.head_detail import HeadDetail, head_detail, head_name
from sparkql.tui.data.headmap import HeadCell, HeadMap, default_circuit, head_map
from sparkql.tui.data.runs import (
    CircuitRow,
    EvalRow,
    HeadSetRow,
    ModelRow,
    RunRow,
    SeriesRow,
    StudyContents,
    list_runs,
    study_contents,
)
from sparkql.tui.data.samples import Sample, problems, samples
from sparkql.tui.data.sql import QueryRefused, QueryTimeout, run_sql
from sparkql.tui.data.store import (
    StoreBusy,
    StoreCheck,
    StoreState,
    StoreUnavailable,
    check_connection,
    check_store,
    connect,
    fingerprint,
)

__all__ = [
    "ALL_RUNS", "Table",
    "StoreBusy", "StoreCheck", "StoreState", "StoreUnavailable", "check_connection", "check_store", "connect", "fingerprint",
    "CircuitRow", "EvalRow", "HeadSetRow", "ModelRow", "RunRow", "SeriesRow", "StudyContents", "list_runs", "study_contents",
    "HeadCell", "HeadMap", "default_circuit", "head_map",
    "HeadDetail", "head_detail", "head_name",
    "CohortView", "cohort_view",
    "STATUS_METRICS", "eval_label", "eval_table", "intact_counterpart",
    "Sample", "problems", "samples",
    "DiffRow", "EvalDiff", "eval_diff",
    "QueryRefused", "QueryTimeout", "run_sql",
]
