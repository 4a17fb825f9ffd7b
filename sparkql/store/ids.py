"""How ids are shown for reading (``sparkql sql``'s table, the TUI's SQL tab).

Ids (circuit_id, eval_id, model_id, set_key, ...) are 64-hex content addresses: whole, a table of
them folds every row over many lines at 80 columns. Tables for reading show their first
SHORT_ID digits, enough to tell them apart and to find one again (``WHERE eval_id LIKE
'prefix%'``; ``sparkql export circuit`` takes a prefix); csv, json, parquet, ``--full-ids`` and
the TUI's full-ids toggle keep the whole key for joins.
"""

from __future__ import annotations

import re

SHORT_ID = 12
HEX_ID = re.compile(r"[0-9a-f]{32,}")


def is_id(value) -> bool:
    """Whether ``value`` is a content address (32 or more lowercase hex digits)."""
    return isinstance(value, str) and HEX_ID.fullmatch(value) is not None


def short_id(value: str) -> str:
    """The first SHORT_ID digits and an ellipsis that marks the id as shortened."""
    return value[:SHORT_ID] + "…"
