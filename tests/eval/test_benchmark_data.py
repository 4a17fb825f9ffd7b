"""The shipped benchmark files are exactly the ones SOURCES.json records, and the builtin
datasets read them with their grader's roles."""

from __future__ import annotations

import hashlib
import json

import pytest

from sparkql.builtins import BUILTIN_DATASETS, DATA_DIR

BENCH = DATA_DIR / "benchmarks"
SOURCES = json.loads((BENCH / "SOURCES.json").read_text())


def test_every_shipped_file_is_listed():
    shipped = {str(p.relative_to(BENCH)) for p in BENCH.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".json", ".csv", ".parquet")}
    shipped.discard("SOURCES.json")
    assert shipped == set(SOURCES)


@pytest.mark.parametrize("rel", sorted(SOURCES))
def test_sha256_rows_and_fields(rel):
    entry = SOURCES[rel]
    data = (BENCH / rel).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    assert len(rows) == entry["rows"]
    assert set(rows[0]) == set(entry["fields"])


@pytest.mark.parametrize("name", ["aime24", "aime25", "amc23", "amc", "math500", "gsm8k", "triviaqa", "triviaqa_small"])
def test_builtin_roles_exist_in_every_row(name):
    b = BUILTIN_DATASETS[name]
    rows = [json.loads(line) for line in b.path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        for role, field in b.roles.items():
            assert field in r, (name, role, field)
    ids = [str(r[b.roles["id"]]) for r in rows]
    assert len(set(ids)) == len(ids), f"{name}: duplicate problem ids"
