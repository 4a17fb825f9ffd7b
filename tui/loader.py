"""Running store queries in Textual thread workers.

Every database read goes through :func:`load`: the query runs in a thread
worker (the event loop never waits on DuckDB), the connection is opened
read-only and closed as soon as the query returns, and the result is handed
back on the event loop. When a writer holds the file, the app is told (it
shows "store busy, retrying" and reloads once its poll gets through) instead
of anything raising in the interface.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import duckdb
from textual.dom import DOMNode
from textual.worker import Worker, get_current_worker

from sparkql.errors import SparkError
from sparkql.tui import data
from sparkql.tui.messages import StoreBusy

T = TypeVar("T")


def load(
    node: DOMNode,
    query: Callable[[duckdb.DuckDBPyConnection], T],
    done: Callable[[T], Any],
    *,
    group: str,
    failed: Callable[[str], Any] | None = None,
) -> Worker[None]:
    """Run ``query(con)`` in a thread worker, then ``done(result)`` on the event loop.

    Workers of one ``group`` are exclusive: a newer request cancels the older,
    so moving the cursor fast never shows stale data. ``failed`` receives the
    message of an error (a bad SQL query, say); without it the app notifies.
    """
    app = node.app
    db_path = app.db_path  # type: ignore[attr-defined]

    def work() -> None:
        try:
            with data.connect(db_path) as con:
                result = query(con)
        except data.StoreBusy as e:
            app.post_message(StoreBusy(str(e)))
            return
        except (duckdb.Error, data.QueryTimeout, SparkError, KeyError, ValueError) as e:
            # A SparkError's own words, not its rendering (which starts with a file name).
            message = (e.message if isinstance(e, SparkError) else str(e)).strip() or type(e).__name__
            if failed is not None:
                _call(app, failed, message)
            else:
                _call(app, app.notify, message, title="query failed", severity="error")
            return
        except Exception as e:  # noqa: BLE001 - a bug must show up, not kill the interface
            _call(app, app.notify, f"{type(e).__name__}: {e}", title="internal error (please report)", severity="error")
            return
        if get_current_worker().is_cancelled:
            return  # a newer request of the same group replaced this one

        def deliver() -> None:
            if node.is_attached:  # the screen may have been closed meanwhile
                done(result)

        _call(app, deliver)

    return node.run_worker(work, thread=True, exclusive=True, group=group, exit_on_error=False)


class LazyLoad:
    """Mixin for tab views: load when first shown, and on store changes reload only while visible.

    At start-up only the visible tab queries the store, so the first screen
    (and the head map, with ``--tab heads``) is not queued behind the others.
    A view must define ``reload()``.
    """

    _stale = True

    def on_show(self) -> None:
        if self._stale:
            self._stale = False
            self.reload()  # type: ignore[attr-defined]

    def store_changed(self) -> None:
        if self.is_on_screen:  # type: ignore[attr-defined]
            self._stale = False
            self.reload()  # type: ignore[attr-defined]
        else:
            self._stale = True


def _call(app: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Hand a result to the event loop; an app shutting down just drops it."""
    try:
        app.call_from_thread(fn, *args, **kwargs)
    except RuntimeError:
        pass
