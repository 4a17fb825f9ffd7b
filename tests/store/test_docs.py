"""Every example query of docs/store.md runs against a small store and returns rows."""

from __future__ import annotations

import re
from pathlib import Path

from sparkql.store.api import connect

DOC = Path(__file__).parents[2] / "docs" / "store.md"


def test_every_documented_query_runs(hand_store):
    db, _ = hand_store
    queries = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(queries) >= 8
    con = connect(db)
    try:
        for q in queries:
            rows = con.execute(q).fetchall()
            assert rows, q
    finally:
        con.close()


def test_every_table_and_view_is_documented():
    from sparkql.store.schema import TABLES, VIEWS

    text = DOC.read_text()
    for name in list(TABLES) + list(VIEWS):
        assert f"| `{name}` |" in text, name
