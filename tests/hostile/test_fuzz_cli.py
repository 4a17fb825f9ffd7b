"""The CLI over a catalogue of hostile inputs (issue 14): study text, data files, model directories
and stores that a careless or hostile user produces. For every one: no traceback, exit 2 with a
message (`error:`), and not one byte of a store changed by a command that only reads it.

The catalogue is explicit (each case says what it is); a Hypothesis test adds random bytes as a
study and as a dataset on top."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import assert_user_error, cli, copy_model, edit_config, file_bytes
from .test_models import _evil_checkpoint
from .test_stores import variants_study

GOOD_ROW = {"id": "a", "problem": "What is 1 + 1?", "answer": "2"}

# ---- study text: `check` and `plan` exit 2, `fmt` when it does not parse --------------------------------------------
STUDIES: dict[str, bytes] = {
    "empty_name": b'model = "x"\n',
    "not_utf8": b'model m = "\xff\xfe"\n',
    "nul_bytes": b'model m\x00 = "x"\n',
    "only_a_bom_and_junk": b"\xef\xbb\xbf@@@\n",
    "utf16": "think off\n".encode("utf-16"),
    "huge_integer": b"set seed = " + b"9" * 5000 + b"\n",
    "huge_float": b"set tau = 1" + b"0" * 400 + b".5\n",
    "negative_zero_steps": b"set steps = -0\n",
    "inf_word": b"set tau = inf\n",
    "nan_word": b"set temperature = nan\n",
    "huge_head": b"heads x = {L" + b"9" * 400 + b"H1}\n",
    "huge_selector": b'model m = "m"\nheads x = m[' + b"9" * 400 + b"]\n",
    "deep_alternating_sets": b"heads x = " + b"".join(b"{L1H1} %s (" % b"|&-"[i % 3: i % 3 + 1] for i in range(600))
                             + b"{L1H1}" + b")" * 600 + b"\n",
    "deep_parentheses_unclosed": b"heads x = " + b"(" * 5000 + b"\n",
    "long_line": b"think off; " * 20000 + b"thnk on\n",
    "many_errors": b"modle a\n" * 400,
    "unterminated_string": b'model m = "abc\n',
    "control_characters": b"think \x1b[31moff\n",
}

# ---- data files: `check` of a study declaring them exits 2 ----------------------------------------
def _jsonl(*rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


DATA: dict[str, tuple[str, bytes | None]] = {
    "null_field": ("d.jsonl", _jsonl(GOOD_ROW, {**GOOD_ROW, "answer": None})),
    "object_field": ("d.jsonl", _jsonl(GOOD_ROW, {**GOOD_ROW, "problem": {"t": 1}})),
    "nan_answer": ("d.jsonl", b'{"problem": "x", "answer": NaN}\n'),
    "infinite_answer": ("d.jsonl", b'{"problem": "x", "answer": Infinity}\n'),
    "empty": ("d.jsonl", b""),
    "blank_lines": ("d.jsonl", b"\n\n  \n"),
    "garbage_bytes": ("d.jsonl", bytes(range(256)) * 4),
    "not_utf8_csv": ("d.csv", b"problem,answer\n\xff\xfe,1\n"),
    "ragged_csv": ("d.csv", b"problem,answer\nonly one field\n"),
    "csv_header_only": ("d.csv", b"problem,answer\n"),
    "jsonl_in_json": ("d.json", _jsonl(GOOD_ROW, GOOD_ROW)),
    "json_scalar": ("d.json", b"42"),
    "json_list_of_lists": ("d.json", b"[[1, 2]]"),
    "deep_json": ("d.json", b"[" * 100000 + b"]" * 100000),
    "deep_jsonl_value": ("d.jsonl", b'{"problem": ' + b"[" * 100000 + b"]" * 100000 + b"}\n"),
    "text_as_parquet": ("d.parquet", b"not parquet at all\n"),
    "truncated_parquet": ("d.parquet", None),  # built below from a real file
    "gpqa_choices_not_a_list": ("gpqa.jsonl", _jsonl({"id": "g", "question": "q", "answer": "a", "choices": "b"})),
    "choices_broken_json": ("d.jsonl", _jsonl({**GOOD_ROW, "choices": "[not json"})),
    "a_directory": ("dir.jsonl", None),
}

# ---- model directories: `check` (config) or `run` (weights) exits 2 -------------------------------
MODELS_AT_CHECK = ["config_list", "config_not_json", "config_binary", "config_empty", "config_is_a_directory",
                   "no_config", "zero_heads", "string_size", "heads_not_dividing", "unknown_architecture",
                   "deep_config", "negative_layers", "no_weights"]
MODELS_AT_RUN = ["truncated_weights", "empty_weights", "garbage_header", "evil_pickle", "wrong_shapes"]


def _model(kind: str, tiny: Path, d: Path) -> Path:
    m = copy_model(tiny, d / kind)
    cfg, w = m / "config.json", m / "model.safetensors"
    match kind:
        case "config_list": cfg.write_text("[1, 2]")
        case "config_not_json": cfg.write_text("{not json")
        case "config_binary": cfg.write_bytes(bytes(range(256)))
        case "config_empty": cfg.write_text("")
        case "config_is_a_directory": cfg.unlink(); cfg.mkdir()
        case "no_config": cfg.unlink()
        case "zero_heads": edit_config(m, num_attention_heads=0)
        case "string_size": edit_config(m, hidden_size="32")
        case "heads_not_dividing": edit_config(m, num_attention_heads=3)
        case "unknown_architecture": edit_config(m, architectures=["Nope"], model_type="nope")
        case "deep_config": cfg.write_text('{"a": ' + "[" * 100000 + "]" * 100000 + "}")
        case "negative_layers": edit_config(m, num_hidden_layers=-2)
        case "truncated_weights": w.write_bytes(w.read_bytes()[:-100])
        case "empty_weights": w.write_bytes(b"")
        case "garbage_header": w.write_bytes(b"\xff" * 8 + w.read_bytes()[8:])
        case "evil_pickle": w.unlink(); _evil_checkpoint(m / "pytorch_model.bin", d / f"{kind}-ran")
        case "no_weights": w.unlink()
        case "wrong_shapes": edit_config(m, intermediate_size=48)
        case "valid": pass
    return m


# ---- stores: read-only commands exit 0 or 2 and change no byte -------------------------------------
STORES = ["text_file", "empty_file", "truncated", "bad_schema_version", "no_schema_version", "other_tables",
          "a_directory", "newer_schema", "valid"]
UNREADABLE = {"text_file", "empty_file", "truncated", "a_directory"}
READ_ONLY = {
    "sql": ["sql", "SELECT count(*) FROM steps"],
    "sql_csv": ["sql", "SELECT * FROM variants", "--format", "csv"],
    "export": ["export", "variants", "--out", "{out}/v.csv"],
    "figures": ["figures", "--out", "{out}/figs"],
    "plan": ["plan", "{study}"],
    "dry_run": ["run", "{study}", "--dry-run"],
    "diff": ["diff", "m", "m:v0"],
}


@pytest.fixture(scope="module")
def tree(tiny_qwen2, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    (root / "data").mkdir()
    for name, (fname, content) in DATA.items():
        f = root / "data" / name / fname
        f.parent.mkdir(parents=True)
        if content is not None:
            f.write_bytes(content)
    (root / "data" / "a_directory" / "dir.jsonl").mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    real = root / "real.parquet"
    pq.write_table(pa.table({"problem": ["x"] * 100, "answer": ["1"] * 100}), real)
    (root / "data" / "truncated_parquet" / "d.parquet").write_bytes(real.read_bytes()[:-30])
    models = root / "models"
    models.mkdir()
    for kind in MODELS_AT_CHECK + MODELS_AT_RUN + ["valid"]:
        _model(kind, tiny_qwen2, models)
    good = root / "good.spark"
    good.write_text(variants_study(tiny_qwen2, 2))
    valid = root / "valid.duckdb"
    assert cli("run", str(good), "--db", str(valid), "-q").code == 0
    return root


def _store(kind: str, tree: Path, d: Path) -> Path:
    db = d / "store.duckdb"
    valid = tree / "valid.duckdb"
    match kind:
        case "text_file": db.write_text("hello\n")
        case "empty_file": db.write_bytes(b"")
        case "truncated": db.write_bytes(valid.read_bytes()[:5000])
        case "a_directory": db.mkdir()
        case _: shutil.copy(valid, db)
    if kind in ("bad_schema_version", "no_schema_version", "other_tables", "newer_schema"):
        con = duckdb.connect(str(db))
        if kind == "bad_schema_version":
            con.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
        elif kind == "no_schema_version":
            con.execute("DELETE FROM meta")
        elif kind == "newer_schema":
            con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        else:
            for (t,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall():
                con.execute(f'DROP VIEW "{t}"')
            for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
                con.execute(f'DROP TABLE "{t}"')
            con.execute("CREATE TABLE notes (x INTEGER)")
        con.close()
    return db


def _no_traceback(r) -> None:
    assert "Traceback" not in r.err and "Traceback" not in r.out, r.err


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_hostile_study_text(tmp_path, name):
    f = tmp_path / f"{name}.spark"
    f.write_bytes(STUDIES[name])
    for cmd in (["check", str(f)], ["plan", str(f), "--db", str(tmp_path / "none.duckdb")]):
        assert_user_error(cli(*cmd), f.name)
    r = cli("fmt", str(f))  # fmt only parses: text that parses (deep sets) formats
    _no_traceback(r)
    assert r.code == 0 or (r.code == 2 and "error:" in r.err), r.err


@pytest.mark.parametrize("name", sorted(DATA))
def test_hostile_data_file(tree, tmp_path, name):
    fname = DATA[name][0]
    path = tree / "data" / name / fname
    declared = "gpqa" if fname.startswith("gpqa") else "d"
    f = tmp_path / "s.spark"
    f.write_text(f'model m = "{tree / "models" / "valid"}"\ndataset {declared} = "{path}"\n'
                 f"eval pass@k on {declared} for m\n")
    r = cli("check", str(f))
    assert_user_error(r, "s.spark:2:")
    assert "s.spark:1:" not in r.err  # the model is fine: only the data is reported


@pytest.mark.parametrize("kind", MODELS_AT_CHECK)
def test_hostile_model_directory_at_check(tree, tmp_path, kind):
    f = tmp_path / "s.spark"
    f.write_text(f'model m = "{tree / "models" / kind}"\n')
    assert_user_error(cli("check", str(f)), "s.spark:1:11:")


@pytest.mark.parametrize("kind", MODELS_AT_RUN)
def test_hostile_model_directory_at_run(tree, tmp_path, kind):
    data = tmp_path / "p.jsonl"
    data.write_bytes(_jsonl(GOOD_ROW))
    f = tmp_path / "s.spark"
    f.write_text(f'model m = "{tree / "models" / kind}"\ndataset p = "{data}"\n'
                 'eval pass@k on p for m with n = 1, max_tokens = 2, instruction = ""\n')
    r = cli("run", str(f), "--db", str(tmp_path / "s.duckdb"), "-q")
    assert_user_error(r, "s.spark:3:1:")
    assert not (tree / "models" / f"{kind}-ran").exists()


@pytest.mark.parametrize("cmd", sorted(READ_ONLY))
@pytest.mark.parametrize("kind", STORES)
def test_read_only_commands_on_hostile_stores_change_no_byte(tree, tmp_path, kind, cmd):
    db = _store(kind, tree, tmp_path)
    before = file_bytes(db) if db.is_file() else None
    args = [a.format(out=tmp_path, study=tree / "good.spark") for a in READ_ONLY[cmd]]
    r = cli(*args, "--db", str(db))
    _no_traceback(r)
    # sql and export read any DuckDB file as it is; figures and diff need this build's schema
    if kind in UNREADABLE or (kind == "bad_schema_version" and cmd in ("figures", "diff")):
        assert_user_error(r)
    else:  # a DuckDB file: a command may work (plan only reads step keys) or say why it cannot
        assert r.code == 0 or (r.code == 2 and "error:" in r.err), r.err
    if before is not None:
        assert file_bytes(db) == before, f"`sparkql {cmd}` changed the store"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=400))
def test_random_bytes_as_a_study_and_as_a_dataset(tree, tmp_path, blob):
    f = tmp_path / "random.spark"
    f.write_bytes(blob)
    r = cli("check", str(f))
    _no_traceback(r)
    assert r.code in (0, 2) and (r.code == 0 or "error:" in r.err)
    data = tmp_path / "random.jsonl"
    data.write_bytes(blob)
    f.write_text(f'model m = "{tree / "models" / "valid"}"\ndataset d = "{data}"\n')
    r = cli("check", str(f))
    _no_traceback(r)
    assert r.code in (0, 2) and (r.code == 0 or "error:" in r.err)
