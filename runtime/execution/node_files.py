"""What a cluster worker checks before it runs a step: that it sees the files the plan was made from.

Workers read models and datasets by path, so every node must see the same files at the paths
the plan recorded (a shared filesystem, or copies made with their modification times kept:
``rsync -a``). A node that mounts the shared storage elsewhere maps the plan's paths to its own
with ``SPARKQL_PATH_MAP`` in the environment of its Ray processes::

    SPARKQL_PATH_MAP="/home/me/models=/mnt/shared/models:/home/me/data=/mnt/shared/data"

(pairs ``PLAN_PREFIX=NODE_PREFIX`` separated by ``:``; the longest matching prefix wins).

Before a step runs, each model and dataset it names is checked against the fingerprint the plan
recorded (config.json and the weight files' names, sizes and modification times; a dataset's
bytes; a zoo model's recipe). A missing or different file is a SparkError naming the node and
the path, never a step run on other weights.
"""

from __future__ import annotations

import os
from pathlib import Path

from sparkql.errors import SparkError
from sparkql.plan.steps import Step

PATH_MAP_ENV = "SPARKQL_PATH_MAP"


def path_map(env: str | None = None) -> list[tuple[str, str]]:
    """(plan prefix, node prefix) pairs from ``$SPARKQL_PATH_MAP``, longest plan prefix first."""
    text = os.environ.get(PATH_MAP_ENV, "") if env is None else env
    pairs = []
    for item in filter(None, (p.strip() for p in text.split(":"))):
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise SparkError(f"{PATH_MAP_ENV}: {item!r} is not PLAN_PREFIX=NODE_PREFIX",
                             hint=f'e.g. {PATH_MAP_ENV}="/home/me/models=/mnt/shared/models"')
        pairs.append((src.rstrip("/") or "/", dst.rstrip("/") or "/"))
    return sorted(pairs, key=lambda p: -len(p[0]))


def map_path(path: str, pairs: list[tuple[str, str]]) -> str:
    for src, dst in pairs:
        if path == src or path.startswith(src.rstrip("/") + "/"):
            return dst + path[len(src):] if src != "/" else dst.rstrip("/") + path
    return path


def _is_model_ref(o: dict) -> bool:
    return "model_id" in o and "fingerprint" in o and "path" in o


def _is_dataset_ref(o: dict) -> bool:
    return "format" in o and "fingerprint" in o and "path" in o


def localize(step: Step, pairs: list[tuple[str, str]]) -> Step:
    """The step with its model and dataset paths as this node sees them (keys are unchanged)."""
    if not pairs:
        return step

    def walk(o):
        if isinstance(o, dict):
            out = {k: walk(v) for k, v in o.items()}
            if (_is_model_ref(o) or _is_dataset_ref(o)) and not str(o["path"]).startswith("zoo:"):
                out["path"] = map_path(str(o["path"]), pairs)
            return out
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    spec = walk(step.spec.model_dump(mode="python"))
    return step.model_copy(update={"spec": type(step.spec).model_validate(spec)})


def file_refs(step: Step) -> tuple[list[dict], list[dict]]:
    """The model and dataset references a step's spec names (as plain dicts), each once."""
    models: dict[str, dict] = {}
    datasets: dict[str, dict] = {}

    def walk(o) -> None:
        if isinstance(o, dict):
            if _is_model_ref(o):
                models.setdefault(o["path"], o)
            elif _is_dataset_ref(o):
                datasets.setdefault(o["path"], o)
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(step.spec.model_dump(mode="json"))
    return list(models.values()), list(datasets.values())


def _model_fingerprint(path: str) -> str | None:
    """This node's fingerprint of a model directory (None when it has no config.json, nor an
    adapter_config.json for a PEFT adapter checkpoint)."""
    from sparkql.plan.fingerprint import fingerprint_dir  # the compiler's own definition

    d = Path(path)
    if not ((d / "config.json").is_file() or (d / "adapter_config.json").is_file()):  # a model or a PEFT adapter
        return None
    return fingerprint_dir(d)


def check_files(step: Step, node: str, plan_paths: dict[str, str] | None = None,
                checked: set[tuple[str, str]] | None = None) -> None:
    """Raise a SparkError naming ``node`` and the path when a file of ``step`` is missing or differs.

    ``plan_paths`` maps a node path back to the plan's path (for the message when a path map is
    in use); ``checked`` remembers (path, fingerprint) pairs already verified by this worker.
    """
    from sparkql.plan.fingerprint import dataset_fingerprint, zoo_fingerprint

    plan_paths = plan_paths or {}
    checked = checked if checked is not None else set()
    models, datasets = file_refs(step)

    def where(path: str) -> str:
        orig = plan_paths.get(path)
        return path if not orig or orig == path else f"{path} (the plan's {orig}, mapped by {PATH_MAP_ENV})"

    for ref in models:
        path, want = ref["path"], ref["fingerprint"]
        if (path, want) in checked:
            continue
        if path.startswith("zoo:"):
            got = zoo_fingerprint()
            if got != want:
                raise SparkError(
                    f"node {node}: the zoo model {path} would be built from another recipe than the plan's "
                    f"(fingerprint {got}, plan {want})",
                    hint="run the same sparkql version with the same SPARKQL_ZOO_PRESET on every node",
                )
        else:
            got = _model_fingerprint(path)
            if got is None:
                raise SparkError(
                    f"node {node}: model {ref['label']} is missing: no config.json or adapter_config.json in {where(path)}",
                    hint="workers read models by path: put them on storage every node mounts at the same path, "
                         f"or map the path on that node with {PATH_MAP_ENV}",
                )
            if got != want:
                raise SparkError(
                    f"node {node}: model {ref['label']} at {where(path)} differs from the one the plan was made "
                    f"from (fingerprint {got}, plan {want}: its config or the weight files' sizes or times)",
                    hint="give every node the same files (copies keep their modification times with `rsync -a`), "
                         "or rerun to plan against the files as they are now",
                )
        checked.add((path, want))
    for ref in datasets:
        path, want = ref["path"], ref["fingerprint"]
        if (path, want) in checked:
            continue
        p = Path(path)
        if not p.is_file():
            raise SparkError(f"node {node}: dataset {ref['name']} is missing: no file {where(path)}",
                             hint="workers read datasets by path, like models: use storage every node shares")
        got = dataset_fingerprint(p)
        if got != want:
            raise SparkError(
                f"node {node}: dataset {ref['name']} at {where(path)} differs from the plan's "
                f"(sha256 {got}, plan {want})",
                hint="give every node the same file, or rerun to plan against the file as it is now",
            )
        checked.add((path, want))
