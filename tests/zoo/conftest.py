"""One tiny-preset zoo per test session, built through the CLI into a temporary cache."""

from __future__ import annotations

import json
import os

import pytest


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    """Build the ``tiny`` preset with ``sparkql zoo build`` (SPARKQL_ZOO_DIR: a temp dir).

    Yields (root, manifest, cli_output). The environment is restored afterwards."""
    from click.testing import CliRunner

    from sparkql import zoo
    from sparkql.cli.main import cli

    saved = {k: os.environ.get(k) for k in ("SPARKQL_ZOO_DIR", "SPARKQL_ZOO_PRESET")}
    os.environ["SPARKQL_ZOO_DIR"] = str(tmp_path_factory.mktemp("zoo"))
    os.environ["SPARKQL_ZOO_PRESET"] = "tiny"
    try:
        result = CliRunner().invoke(cli, ["zoo", "build"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        root = zoo.cache_root()
        yield root, json.loads((root / "zoo.json").read_text()), result.output
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
