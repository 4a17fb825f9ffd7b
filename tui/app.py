"""The sparkql terminal UI: ``sparkql tui [DB]``.

The app owns the store's path and its health: it checks the file in a
worker before showing anything (a missing, empty, foreign or older store gets
a message, not a traceback), then polls a cheap fingerprint of the store on
an interval, also in a worker, and reloads the tabs when a writer commits.
A writer holding the file shows "store busy, retrying" until the next poll
gets through. Views talk to each other only through messages (messages.py).
"""

from __future__ import annotations

import os
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Center, Middle, Vertical
from textual.lazy import Lazy
from textual.widgets import Footer, Static, TabbedContent, TabPane

from sparkql.tui import data
from sparkql.tui.messages import (
    OpenCohort,
    OpenDiff,
    OpenEvals,
    OpenHead,
    OpenHeadMap,
    OpenSamples,
    RunSelected,
    StoreBusy,
    StoreChanged,
)
from sparkql.tui.screens.cohort import CohortView
from sparkql.tui.screens.diff import DiffScreen
from sparkql.tui.screens.evals import EvalsView
from sparkql.tui.screens.head_detail import HeadDetailScreen
from sparkql.tui.screens.headmap import HeadMapView, default_head_map
from sparkql.tui.screens.help import HelpScreen
from sparkql.tui.screens.runs import RunsView
from sparkql.tui.screens.samples import SamplesScreen
from sparkql.tui.screens.sql import SqlView
from sparkql.tui.widgets.head_grid import HeadGrid

TABS = ("runs", "heads", "cohorts", "evals", "sql")
DEFAULT_POLL_SECONDS = 2.0


class Browser(Vertical):
    """The tabs, mounted once the store has passed its check."""

    DEFAULT_CSS = "Browser { height: 1fr; }"

    def __init__(self, initial: str = "runs", head_map: data.HeadMap | None = None) -> None:
        super().__init__()
        self.initial = initial
        self.head_map = head_map  # prefetched with the store check when opening on the heads tab

    def compose(self) -> ComposeResult:
        views = {
            "runs": ("1 Runs", RunsView()),
            "heads": ("2 Heads", HeadMapView(prefetched=self.head_map)),
            "cohorts": ("3 Cohorts", CohortView()),
            "evals": ("4 Evals", EvalsView()),
            "sql": ("5 SQL", SqlView()),
        }
        with TabbedContent(initial=self.initial, id="tabs"):
            for tab, (title, view) in views.items():
                with TabPane(title, id=tab):
                    # The tabs not on screen are mounted after the first paint.
                    yield view if tab == self.initial else Lazy(view)


class SparkqlApp(App[None]):
    TITLE = "sparkql"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #status { height: 1; background: $panel; color: $text; padding: 0 1; }
    #status.busy { background: $warning 40%; }
    #problem { width: 72; max-width: 100%; height: auto; border: round $error; padding: 1 2; }
    TabbedContent { height: 1fr; }
    TabPane { padding: 0; }
    """

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False),
        Binding("r", "reload", "Reload"),
        Binding("1", "tab('runs')", "Runs", show=False),
        Binding("2", "tab('heads')", "Heads", show=False),
        Binding("3", "tab('cohorts')", "Cohorts", show=False),
        Binding("4", "tab('evals')", "Evals", show=False),
        Binding("5", "tab('sql')", "SQL", show=False),
    ]

    def __init__(self, db_path: str | os.PathLike[str], *, poll_seconds: float = DEFAULT_POLL_SECONDS, tab: str = "runs") -> None:
        super().__init__()
        if tab not in TABS:
            raise ValueError(f"unknown tab {tab!r}; tabs: {', '.join(TABS)}")
        self.initial_tab = tab
        self.db_path = os.fspath(db_path)
        self.db_name = os.path.basename(self.db_path)
        self.poll_seconds = poll_seconds
        self.check: data.StoreCheck | None = None
        self._fingerprint: tuple[Any, ...] | None = None
        self._busy = False
        self._tabs_mounted = False  # set at mount time: the Browser composes its tabs later

    # -- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(f"sparkql · {self.db_name} · opening…", id="status")
        with Middle(id="problem-box"):
            with Center():
                yield Static(f"opening {self.db_name}…", id="problem")
        yield Footer()

    def on_mount(self) -> None:
        self._check()
        if self.poll_seconds > 0:
            self.set_interval(self.poll_seconds, self._poll)

    def _mount_tabs(self, head_map: data.HeadMap | None = None) -> None:
        self._tabs_mounted = True
        self.query_one("#problem-box").remove()
        self.mount(Browser(self.initial_tab, head_map), before=self.query_one(Footer))
        self.call_after_refresh(self._focus_tab, self.initial_tab)

    @property
    def has_tabs(self) -> bool:
        return self._tabs_mounted

    # -- store health and live refresh -----------------------------------------

    @work(thread=True, exclusive=True, group="check", exit_on_error=False)
    def _check(self) -> None:
        prefetch = self.initial_tab == "heads" and not self.has_tabs
        head_map = None
        try:
            if prefetch and os.path.exists(self.db_path):
                # One connection for the check and the first screen: opening is the slow part.
                with data.connect(self.db_path) as con:
                    check = data.check_connection(con, self.db_name)
                    if check.usable:
                        head_map = default_head_map(con)
            else:
                check = data.check_store(self.db_path)
        except data.StoreBusy as e:
            self.post_message(StoreBusy(str(e)))
            return
        except data.StoreUnavailable:
            check = data.check_store(self.db_path)  # words the problem
        self.call_from_thread(self._checked, check, head_map)

    def _checked(self, check: data.StoreCheck, head_map: data.HeadMap | None = None) -> None:
        was_usable = self.check is not None and self.check.usable
        self.check = check
        self._set_busy(False)
        if not check.usable:
            short = "no such file" if check.state is data.StoreState.MISSING else check.state.value.replace("_", " ")
            self._status(short)
            if self.has_tabs:
                # The file went away or was replaced under us: say so (once), keep what is on screen.
                if was_usable:
                    self.notify(check.message, title="store unavailable", severity="error")
            else:
                self.query_one("#problem", Static).update(Text(check.message + "\n\nq: quit · r: check again"))
            return
        if not self.has_tabs:
            self._mount_tabs(head_map)
        note = check.message if check.state is data.StoreState.NEWER else ("" if check.has_results else "no results yet")
        self._status(note)

    def _status(self, note: str = "") -> None:
        parts = ["sparkql", self.db_name]
        if self.check and self.check.version is not None:
            parts.append(f"schema v{self.check.version}")
        if self._busy:
            parts.append("store busy (a run is writing), retrying")
        elif note:
            parts.append(note)
        self.query_one("#status", Static).update(Text(" · ".join(parts)))

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.query_one("#status").set_class(busy, "busy")

    def _poll(self) -> None:
        if self.check is None or not self.check.usable:
            self._check()  # a run may create or migrate the store meanwhile
        else:
            self._poll_fingerprint()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll_fingerprint(self) -> None:
        try:
            with data.connect(self.db_path) as con:
                fp = data.fingerprint(con)
        except data.StoreBusy as e:
            self.post_message(StoreBusy(str(e)))
            return
        except Exception:  # noqa: BLE001 - the file vanished or was replaced: re-check it
            self.call_from_thread(self._check)
            return
        self.call_from_thread(self._polled, fp)

    def _polled(self, fp: tuple[Any, ...]) -> None:
        was_busy = self._busy
        if was_busy:
            self._set_busy(False)
            self._status()
        if self._fingerprint is None:
            self._fingerprint = fp
            if not was_busy:
                return
        if fp != self._fingerprint or was_busy:
            self._fingerprint = fp
            self.post_message(StoreChanged())

    def on_store_busy(self, message: StoreBusy) -> None:
        self._set_busy(True)
        self._status()

    def on_store_changed(self, message: StoreChanged) -> None:
        self._reload_views()

    def _reload_views(self) -> None:
        for view in (RunsView, HeadMapView, CohortView, EvalsView):
            for v in self.query(view):
                v.store_changed()

    # -- actions -----------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_reload(self) -> None:
        if self.has_tabs:
            self._reload_views()
        else:
            self._check()

    def action_tab(self, tab: str) -> None:
        tabs = self.screen.query(TabbedContent)
        if tabs and self.screen is self.screen_stack[0]:
            tabs.first().active = tab
            self._focus_tab(tab)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._focus_tab(event.pane.id)

    def _focus_tab(self, tab: str) -> None:
        selector = {"runs": "#runs-table", "heads": "HeadGrid", "cohorts": "#cohort-series", "evals": "#evals-table", "sql": "#sql-input"}[tab]
        for w in self.query(selector):
            w.focus()
            break

    # -- navigation messages from the views --------------------------------------

    def on_run_selected(self, message: RunSelected) -> None:
        for v in self.query(EvalsView):
            v.run_id = message.run_id
            v.store_changed()

    def on_open_head_map(self, message: OpenHeadMap) -> None:
        self.action_tab("heads")
        self.query_one(HeadMapView).show(message.kind, message.source_id)
        self.query_one(HeadGrid).focus()

    def on_open_head(self, message: OpenHead) -> None:
        self.push_screen(HeadDetailScreen(message.layer, message.head, message.circuit_id, message.dataset, message.context))

    def on_open_cohort(self, message: OpenCohort) -> None:
        self.action_tab("cohorts")
        self.query_one(CohortView).show(message.cohort_key)

    def on_open_evals(self, message: OpenEvals) -> None:
        self.action_tab("evals")
        self.query_one(EvalsView).highlight(message.eval_id)

    def on_open_samples(self, message: OpenSamples) -> None:
        self.push_screen(SamplesScreen(message.eval_id))

    def on_open_diff(self, message: OpenDiff) -> None:
        self.push_screen(DiffScreen(message.a, message.b))


def run(db_path: str | os.PathLike[str], poll_seconds: float = DEFAULT_POLL_SECONDS, tab: str = "runs") -> None:
    SparkqlApp(db_path, poll_seconds=poll_seconds, tab=tab).run()
