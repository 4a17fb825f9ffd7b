"""The Textual terminal UI (``sparkql tui``). Ships as sparkql.tui.

Layout:
- ``data/``: every query, plain SQL over a read-only DuckDB connection held
  only for the query (no Textual; tested on its own), one module per screen.
- ``loader.py``: runs those queries in thread workers and hands results back
  to the event loop; ``LazyLoad`` makes a tab query only when shown.
- ``messages.py``: the dataclass messages views use to ask the app to
  navigate (open a head map, a head, a cohort, samples, a diff).
- ``app.py``: store health (missing / empty / foreign / older schema),
  live polling, tabs and navigation.
- ``screens/``: one module per feature: runs, headmap, head_detail, cohort,
  evals, samples, diff, sql, help.
- ``widgets/``: the head grid, its palette (pure functions), the stacked
  cohort bars, table formatting.

Never imports torch or transformers (tests/tui checks it in a subprocess).
"""
