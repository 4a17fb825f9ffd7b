"""Finding models and datasets on disk (never on the network).

Relative paths are looked up next to the study file first, then in the
current directory. A glob is a checkpoint series ordered by the integer in
each directory name (``checkpoint-2500``); every directory found must be a
loadable model, full (config.json and weights) or a PEFT adapter
(adapter_config.json and adapter weights, its base found by sparkql.lang.series). A hub id (``Qwen/Qwen2.5-Math-1.5B``)
is resolved through the local Hugging Face cache only. ``zoo:`` paths name
the toy organism (sparkql.zoo), built on demand by the runtime.
"""

from __future__ import annotations

import fnmatch
import glob as _glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sparkql.errors import Span, SparkError
from sparkql.plan.fingerprint import dataset_fingerprint, fingerprint_dir, zoo_fingerprint  # noqa: F401 (re-exported)

_STEP = re.compile(r"(\d+)(?!.*\d)")


@dataclass(frozen=True)
class FoundModel:
    path: str
    """Absolute directory, or the ``zoo:`` path itself."""
    step: int | None
    fingerprint: str
    config: dict | None
    """config.json when readable now (None for zoo models not built yet, and for adapters)."""
    adapter: bool = False
    """A PEFT adapter checkpoint (adapter_config.json, no config.json): loaded merged into a base."""
    adapter_base: str | None = None
    """The adapter's base_model_name_or_path as adapter_config.json writes it."""


def _bases(study_dir: Path | None) -> list[Path]:
    out = []
    if study_dir is not None:
        out.append(study_dir)
    cwd = Path.cwd()
    if cwd not in out:
        out.append(cwd)
    return out


def step_of(path: str) -> int | None:
    m = _STEP.search(Path(path).name)
    return int(m.group(1)) if m else None


def _read_config(d: Path, span: Span | None) -> dict | None:
    """config.json through the runtime's one reader (torch-free); None when there is none."""
    from sparkql.runtime.models.config import read_config

    if not (d / "config.json").is_file():
        return None
    try:
        return read_config(d)
    except SparkError as e:
        e.span = e.span or span
        raise


def _hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def _hub_snapshot(repo_id: str) -> Path | None:
    repo = _hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    return snaps[-1] if snaps else None


def find_models(written: str, span: Span | None, study_dir: Path | None) -> list[FoundModel]:
    """The model directories ``written`` names, ordered by step for a series."""
    if written.startswith("zoo:"):
        return _find_zoo(written, span)
    is_glob = any(ch in written for ch in "*?[")
    if is_glob:
        tried = []
        for base in _bases(study_dir):
            pattern = written if os.path.isabs(written) else str(base / written)
            tried.append(pattern)
            dirs = [Path(p) for p in _glob.glob(pattern) if Path(p).is_dir()]
            if dirs:
                dirs.sort(key=lambda p: (step_of(str(p)) is None, step_of(str(p)) or 0, p.name))
                return [_member(p, f"(checkpoint {i + 1} of {len(dirs)} matched by \"{written}\")", span)
                        for i, p in enumerate(dirs)]
        raise SparkError(f'no model directory matches "{written}"', span=span,
                         hint="looked in " + " and ".join(tried) + "; a series is a glob like \"runs/grpo/checkpoint-*\"")
    tried = []
    for base in _bases(study_dir):
        p = Path(written) if os.path.isabs(written) else base / written
        tried.append(str(p))
        if p.is_dir():
            return [_member(p, "", span, step=None)]
        if p.exists():
            raise SparkError(f'"{written}" is a file, not a model directory', span=span,
                             hint="point at the directory that holds config.json and the weights")
    looks_local = any((b / Path(written).parts[0]).is_dir() for b in _bases(study_dir)) if not os.path.isabs(written) else True
    if re.fullmatch(r"[\w.\-]+/[\w.\-]+", written) and not looks_local:
        snap = _hub_snapshot(written)
        if snap is not None:
            return [_member(snap, "", span, step=None, resolve=False)]
        raise SparkError(f'model "{written}" is neither a local directory nor in the local Hugging Face cache',
                         span=span, hint=f"sparkql never downloads; looked in {', '.join(tried)} and {_hub_cache_dir()}")
    raise SparkError(f'model directory "{written}" does not exist', span=span, hint="looked in " + " and ".join(tried))


def _member(p: Path, which: str, span: Span | None, step: int | None | str = "name", resolve: bool = True) -> FoundModel:
    """One model directory, checked to be loadable: a full model (config.json and weights) or a
    PEFT adapter (adapter_config.json and adapter weights). Every member of a series is checked, so
    a checkpoint still being written fails `check`, not a run hours later."""
    from sparkql.runtime.models.checkpoint import checkpoint_kind

    try:
        kind = checkpoint_kind(p)
    except SparkError as e:
        raise SparkError(f"{p} {which + ' ' if which else ''}is not a loadable model: it {e.message}", span=span,
                         hint=e.hint) from None
    at = step_of(str(p)) if step == "name" else step
    path = str(p.resolve()) if resolve else str(p)
    if kind.kind == "adapter":
        return FoundModel(path, at, fingerprint_dir(p), None, adapter=True, adapter_base=kind.base)
    return FoundModel(path, at, fingerprint_dir(p), _read_config(p, span))


def _find_zoo(written: str, span: Span | None) -> list[FoundModel]:
    try:
        from sparkql import zoo
    except ImportError:  # pragma: no cover - the zoo ships with sparkql
        raise SparkError("the toy model zoo is not available in this build", span=span) from None
    rest = written[len("zoo:"):]
    series, _, sub = rest.partition("/")
    layout = zoo.layout()
    if series not in layout:
        from sparkql.errors import known_names_hint

        raise SparkError(f"unknown zoo model `{series}`", span=span, hint=known_names_hint(series, layout, "zoo models"))
    fp = zoo_fingerprint()
    steps = layout[series]
    if steps is None:
        if sub:
            raise SparkError(f"zoo:{series} is a single model, not a series", span=span, hint=f'use "zoo:{series}"')
        return [FoundModel(f"zoo:{series}", None, fp, None)]
    if not sub:
        sub = "checkpoint-*"
    pattern = sub
    names = [f"checkpoint-{s}" for s in steps]
    matched = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if not matched:
        raise SparkError(f'no zoo checkpoint matches "{written}"', span=span,
                         hint=f"zoo:{series} has " + ", ".join(names))
    return [FoundModel(f"zoo:{series}/{n}", step_of(n), fp, None) for n in matched]


def find_file(written: str, span: Span | None, study_dir: Path | None, what: str = "dataset") -> Path:
    tried = []
    for base in _bases(study_dir):
        p = Path(written) if os.path.isabs(written) else base / written
        tried.append(str(p))
        if p.is_file():
            return p.resolve()
        if p.exists():
            what_it_is = "a directory" if p.is_dir() else "not a regular file (a device, pipe or socket)"
            raise SparkError(f'{what} path "{written}" is {what_it_is}', span=span,
                             hint=f"give the path of a {what} file (.jsonl, .json, .csv or .parquet)")
    raise SparkError(f'{what} file "{written}" does not exist', span=span, hint="looked in " + " and ".join(tried))
