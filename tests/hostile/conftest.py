"""Fixtures of the hostile-input tests (issue 14): damaged model directories, data files and stores,
the CLI run in-process, and a directory this process cannot write."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args: str) -> Result:
    """`sparkql ARGS` in this process (no interpreter start-up per case). An exception that is not
    a SparkError escapes run_cli and fails the test with its traceback, as a user would see it."""
    from sparkql.cli.common import run_cli
    from sparkql.cli.main import cli as group

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run_cli(group, list(args))
        except SystemExit as e:  # `check` and `fmt --check` exit with their own status
            code = e.code if isinstance(e.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


def cli_process(*args: str, env: dict | None = None, prefix: list[str] | None = None, **kw) -> Result:
    """`sparkql ARGS` as its own process."""
    full = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb", **(env or {})}
    r = subprocess.run([*(prefix or []), sys.executable, "-m", "sparkql.cli.main", *args], capture_output=True,
                       text=True, env=full, **{"timeout": 300, **kw})
    return Result(r.returncode, r.stdout, r.stderr)


def assert_user_error(r: Result, *needles: str) -> None:
    """Exit 2, a message, no traceback."""
    assert "Traceback" not in r.err and "Traceback" not in r.out, r.err
    assert r.code == 2, (r.code, r.out, r.err)
    assert "error:" in r.err, r.err
    for n in needles:
        assert n in r.err, (n, r.err)


def file_bytes(path: Path) -> dict[str, bytes]:
    """The store and its side files (WAL, run lock), byte for byte."""
    return {p.name: p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")) if p.is_file()}


def edit_config(model_dir: Path, **changes) -> Path:
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg.update(changes)
    (model_dir / "config.json").write_text(json.dumps(cfg))
    return model_dir


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def problems(tmp_path) -> Path:
    f = tmp_path / "problems.jsonl"
    f.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"What is {i} + 2?", "answer": str(i + 2)}) + "\n"
                         for i in range(2)))
    return f


def eval_study(model_dir: Path, data: Path, options: str = "") -> str:
    return (f'model m = "{model_dir}"{options}\ndataset probs = "{data}"\n'
            'eval pass@k on probs for m with n = 1, k = 1, max_tokens = 2, temperature = 0, instruction = ""\n')


def _can_write(d: Path) -> bool:
    try:
        (d / ".probe").write_text("x")
    except OSError:
        return False
    (d / ".probe").unlink()
    return True


@pytest.fixture
def readonly_dir(tmp_path):
    """(directory, prefix): running a command as ``prefix + command`` finds the directory unwritable.

    As an ordinary user a directory without write permission is enough. As root (containers)
    permissions do not bind, so the command runs in a private mount namespace where the directory
    is bind-mounted read-only (EROFS, what a read-only file system says); nothing outside that one
    process sees the mount."""
    d = tmp_path / "readonly"
    d.mkdir()
    (d / "existing.spark").write_text("model   base = \"x\"\n")
    os.chmod(d / "existing.spark", 0o444)
    os.chmod(d, 0o555)
    try:
        if not _can_write(d):
            yield d, []
            return
        unshare = shutil.which("unshare")
        prefix = [unshare, "-m", "--propagation", "private", "sh", "-c",
                  'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', str(d)] if unshare else None
        if prefix is None or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
            pytest.skip("running as root without permission to mount: no way to make a directory unwritable here")
        yield d, prefix
    finally:
        os.chmod(d, 0o755)
