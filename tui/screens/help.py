"""The help screen: every binding, by tab."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# sparkql tui

Browse a results store: runs, circuits, heads and their cohorts across
checkpoints, evaluations and samples. The store is opened read-only and
re-read every few seconds, so a `sparkql run` writing to it shows up live.

| keys | where | what |
|---|---|---|
| `1`..`5` | anywhere | runs · heads · cohorts · evals · SQL tab |
| `?` or `F1` / `Esc` | anywhere | this help / back |
| `r` | anywhere | reload now |
| `q` | anywhere | quit (back, on a pushed screen) |
| arrows, `Enter` | runs | pick a run; Enter on a circuit, head set, series or eval opens it |
| arrows / `hjkl` | heads | move the cursor (layers left-right, heads up-down) |
| `c` | heads | color mode: score → cohort → frequency (paper fig. 2C) |
| `[` `]` | heads | previous / next checkpoint of the series |
| `Enter` | heads | the head's detail: score in every circuit, cohort, sets, edges |
| `Tab` / `Shift+Tab` | head detail, samples, diff | next / previous panel (scrolled into view) |
| `Enter` | cohorts | show the highlighted series |
| `Enter` | evals | the eval's problems and samples |
| `Space`, `d` | evals | mark A; diff A (or the intact model) against the row |
| `Enter`, `Esc` | SQL | run the query; leave the box (then `1`..`5`, `q` work again) |
| `Ctrl+T` | SQL | ids whole (`sparkql sql --full-ids`) or by their first 12 digits |

**Head map colors.** *score*: viridis, brighter = larger head score; `·` =
not in the circuit. *cohort*: red = base heads, other colors = the checkpoint
where an emergent head first appeared. *frequency*: red base heads fade as
they deactivate; blue emergent heads darken with activation frequency; `•` =
survives to the final checkpoint.
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 100; height: 90%; border: round $accent; background: $surface; padding: 0 1; }
    """

    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)
