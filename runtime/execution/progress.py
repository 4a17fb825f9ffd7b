"""Progress display for a whole study run (rich).

One bar for the study (steps done / total, the step running now, elapsed,
an estimate of the time left) and, below it, whatever bars the running
handler opens through ``ctx.progress.task(description, total)``.

The estimate weighs steps by the plan's cost figures (sparkql/plan/steps.py
``Cost``, weighed by sparkql/plan/waves.py ``step_weight``), because a circuit
on a 1.5B model and a head-set difference are not the same amount of work: it is rough, and says so ("~").

When the console is not a terminal (CI, pipes, tests) nothing live is drawn;
the per-step log lines still are, and a handler's task with a total prints a line at every
tenth of it (and at least once a minute while it advances), so a long generation or circuit
is not silent for minutes in a log.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TaskID, TextColumn, TimeElapsedColumn

from sparkql.plan.waves import step_weight  # one definition (also cluster priorities, `plan --cluster`)


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


LINE_EVERY_S = 60.0  # without a terminal: at least one line a minute while a task advances


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class TaskHandle:
    """What a handler gets from ``ctx.progress.task(...)``."""

    def __init__(self, owner: "Progress", task_id: TaskID | None, description: str = "",
                 total: float | None = None) -> None:
        self._owner = owner
        self._id = task_id
        # Without a live display: the task's own log lines (see the module's docstring).
        self._description = description.replace("\\[", "[")  # rich-escaped labels: ckpt\[step=200]
        self._total = total
        self._done = 0.0
        self._eta = ""
        self._started = self._last_line = time.monotonic()
        self._last_tenth = 0

    def advance(self, n: float = 1) -> None:
        if self._id is not None:
            self._owner._rich.advance(self._id, n)
        elif self._total and not self._owner.live:
            self._done += n
            self._maybe_log()

    def update(self, **fields) -> None:
        if self._id is not None:
            self._owner._rich.update(self._id, **fields)
        elif "eta" in fields:
            self._eta = str(fields["eta"])  # the free text a handler shows (tokens, tok/s)

    def _maybe_log(self) -> None:
        now = time.monotonic()
        tenth = int(10 * self._done / self._total)
        if tenth <= self._last_tenth and now - self._last_line < LINE_EVERY_S:
            return
        self._last_tenth, self._last_line = max(tenth, self._last_tenth), now
        elapsed = now - self._started
        left = elapsed / self._done * (self._total - self._done) if self._done else None
        n, total = _num(self._done), _num(self._total)
        line = (f"  … {self._description}: {n}/{total} ({self._done / self._total:.0%})  "
                f"{_fmt_seconds(elapsed)} elapsed" + (f", ~{_fmt_seconds(left)} left" if left else ""))
        self._owner.log(line + (f"  {self._eta}" if self._eta else ""))

    def close(self) -> None:
        if self._id is not None:
            self._owner._rich.remove_task(self._id)
            self._id = None

    def __enter__(self) -> "TaskHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Progress:
    """Study-level progress. ``live`` False draws nothing (log lines only)."""

    def __init__(self, console: Console, steps: list, live: bool | None = None, log_file: str | None = None) -> None:
        self.console = console
        self.log_file = log_file
        self.live = console.is_terminal if live is None else live
        self.total = len(steps)
        self.weights = {s.key: step_weight(s) for s in steps}
        self.total_weight = sum(self.weights.values()) or 1.0
        self.done = 0
        self.done_weight = 0.0
        self.started = time.monotonic()
        self._rich = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
            disable=not self.live,
            transient=False,
        )
        self._study: TaskID | None = None

    def __enter__(self) -> "Progress":
        self._rich.__enter__()
        self._study = self._rich.add_task("study", total=self.total, eta="")
        return self

    def __exit__(self, *exc) -> None:
        self._rich.__exit__(*exc)

    def estimate_left(self) -> float | None:
        """Seconds left: elapsed per unit of finished work times the work left."""
        if self.done_weight <= 0:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.done_weight * (self.total_weight - self.done_weight)

    def start_step(self, step, position: int) -> None:
        left = self.estimate_left()
        eta = "" if left is None else f"~{_fmt_seconds(left)} left"
        if self._study is not None:
            # labels such as ckpt[step=200] must not read as markup
            self._rich.update(self._study, description=escape(f"[{position}/{self.total}] {step.label}"), eta=eta)

    def finish_step(self, step) -> None:
        self.done += 1
        self.done_weight += self.weights.get(step.key, 1.0)
        if self._study is not None:
            left = self.estimate_left()
            self._rich.update(self._study, completed=self.done, eta="" if left is None else f"~{_fmt_seconds(left)} left")

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False, soft_wrap=True)
        if self.log_file:
            import datetime as dt

            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(f"{dt.datetime.now().isoformat(timespec='seconds')} {message}\n")

    def task(self, description: str, total: float | None = None) -> TaskHandle:
        if not self.live:
            return TaskHandle(self, None, description.strip(), total)
        return TaskHandle(self, self._rich.add_task("  " + description, total=total, eta=""))
