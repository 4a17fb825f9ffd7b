"""The cohort tab: per checkpoint, newly activated vs maintained heads, the stacked cohorts and the reward curve.

The paper's figure 2 A/B in a terminal: per checkpoint, a bar of the newly
activated (emergent) heads stacked by the checkpoint where each first emerged
(the head map's cohort colors) beside a red bar of the maintained base heads,
and the run's reward (or loss) curve below, drawn with textual-plotext.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from sparkql.tui import data
from sparkql.tui.loader import LazyLoad, load
from sparkql.tui.messages import OpenCohort
from sparkql.tui.widgets.palette import BASE_RED, cohort_color, hex_color
from sparkql.tui.widgets.stacked_bars import Bars, StackedBars
from sparkql.tui.widgets.tables import fill


class CohortView(LazyLoad, Horizontal):
    DEFAULT_CSS = """
    CohortView #cohort-left { width: 38; min-width: 30; }
    CohortView #cohort-series { height: auto; max-height: 6; }
    CohortView #cohort-table { height: 1fr; }
    CohortView #cohort-right { width: 1fr; }
    CohortView PlotextPlot { height: 1fr; }
    CohortView StackedBars { height: 1fr; }
    CohortView .caption { height: 1; color: $text-muted; }
    CohortView #cohort-legend { height: auto; color: $text; }
    """

    def __init__(self) -> None:
        super().__init__(id="cohort-view")
        self.cohort_key: str | None = None
        self._series: list[data.SeriesRow] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="cohort-left"):
            yield Static("series (Enter to show)", classes="caption")
            yield DataTable(id="cohort-series", cursor_type="row")
            yield DataTable(id="cohort-table", cursor_type="row", zebra_stripes=True)
        with Vertical(id="cohort-right"):
            yield Static("", id="cohort-legend", classes="caption")
            yield StackedBars(id="cohort-bars")
            yield Static("", id="reward-caption", classes="caption")
            yield PlotextPlot(id="reward-plot")

    def reload(self) -> None:
        load(self, lambda con: data.study_contents(con).series, self._series_loaded, group="cohort-series")

    def _series_loaded(self, series: list[data.SeriesRow]) -> None:
        self._series = series
        fill(
            self.query_one("#cohort-series", DataTable),
            data.Table(["series", "set", "ckpts"], [(s.series, s.set_name, s.n_checkpoints) for s in series]),
            keys=[s.cohort_key for s in series],
        )
        if not series:
            self._empty("no checkpoint series in this store (a `cohort` statement makes one)")
            return
        self.show(self.cohort_key if self.cohort_key in {s.cohort_key for s in series} else series[0].cohort_key)

    def _empty(self, message: str) -> None:
        fill(self.query_one("#cohort-table", DataTable), data.Table(["cohorts"], [(message,)]))
        self.query_one(StackedBars).set_bars(Bars())
        plot = self.query_one(PlotextPlot)
        plot.plt.clear_data()
        plot.plt.clear_figure()
        plot.refresh()

    def show(self, cohort_key: str) -> None:
        self.cohort_key = cohort_key
        if self._stale:  # first visit: the series list too
            self._stale = False
            self.reload()
            return
        load(self, lambda con: data.cohort_view(con, cohort_key), self._loaded, group="cohort")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "cohort-series" and event.row_key.value:
            self.post_message(OpenCohort(event.row_key.value))

    def _loaded(self, cv: data.CohortView) -> None:
        if cv.cohort_key != self.cohort_key:
            return
        fill(
            self.query_one("#cohort-table", DataTable),
            data.Table(
                ["step", "active", "new", "kept", cv.reward_key.split("/")[-1][:10] if cv.reward_key else "reward"],
                [
                    (s, a, n, m, r)
                    for s, a, n, m, r in zip(cv.steps, cv.n_active, cv.newly_activated, cv.maintained, cv.reward)
                ],
            ),
        )
        self._draw_cohorts(cv)
        self._draw_reward(cv)

    def _draw_cohorts(self, cv: data.CohortView) -> None:
        cohorts = tuple(sorted(cv.stacked))
        stacks = [[(cohort_color(c, cohorts), cv.stacked[c][i]) for c in cohorts if cv.stacked[c][i]] for i in range(len(cv.steps))]
        self.query_one(StackedBars).set_bars(
            Bars(labels=[str(s) for s in cv.steps], stacks=stacks, side=[v or 0 for v in cv.maintained], side_color=BASE_RED)
        )
        legend = Text()
        legend.append("new heads by cohort ")
        for c in cohorts:
            legend.append(" ", style=f"on {hex_color(cohort_color(c, cohorts))}")
            legend.append(f"{c} ")
        legend.append("· maintained ")
        legend.append(" ", style=f"on {hex_color(BASE_RED)}")
        self.query_one("#cohort-legend", Static).update(legend)

    def _draw_reward(self, cv: data.CohortView) -> None:
        plot = self.query_one("#reward-plot", PlotextPlot)
        caption = self.query_one("#reward-caption", Static)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plot.display = bool(cv.reward_steps)
        if not cv.reward_steps:
            caption.update("no reward curve: the checkpoints have no trainer_state.json log history")
        else:
            caption.update(Text(f"{cv.reward_key or 'reward'} over training steps (grey: checkpoints)"))
            plt.plot(cv.reward_steps, cv.reward_values, marker="braille", color=(44, 160, 44))
            for s in cv.steps:  # checkpoint positions
                plt.vline(s, color=(120, 120, 120))
        plot.refresh()
