"""The toy model organism's recipe and layout (docs/toy.md). Torch-free.

The compiler imports this module to expand ``zoo:`` model paths without
building anything: ``model sft = "zoo:sft/checkpoint-*"`` becomes one model
per step of :func:`layout`, each pointing at :func:`zoo_dir`, and its
fingerprint uses :func:`recipe_hash`. The runtime (``sparkql.runtime.zoo``)
builds the directories on first use from the same recipe.

Layout of a built zoo (under :func:`cache_root`)::

    base/                    Qwen2ForCausalLM trained from scratch (direct answers)
    sft/checkpoint-N/        SFT on <think> traces, from base
    grpo/checkpoint-N/       GRPO with a correctness reward, from base or (the demo)
                             from an early SFT checkpoint (the recipe's from_sft_step)
    zoo.json                 the recipe, its hash, timings and accuracies

Two presets: ``full`` (the demo) and ``tiny`` (tests: fewer steps and
checkpoints, its own cache directory), picked by ``$SPARKQL_ZOO_PRESET``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib.util import find_spec
from pathlib import Path

from sparkql.errors import SparkError

RECIPE_VERSION = 1
"""Bump to force a rebuild when something outside the hashed recipe changes the zoo."""

DEFAULT_PRESET = "full"

# head_dim 32: the smallest vLLM's CPU attention takes (and vLLM's Qwen2 reads head_dim as
# hidden_size / n_heads), so the demo also runs with `backend = vllm` on a CPU. Two query heads
# of 32 over one kv head have the parameters and the cost of the earlier 4 heads of 16 (a wider
# model, 3 heads in hidden 96, learned hard problems directly and left SFT little to add). With
# two heads SFT needs more steps to pay off: the tiny preset trains 160 (at 40, hard problems
# went from 11% to 16%; at 160, to 31%).
_MODEL = {
    "architecture": "Qwen2ForCausalLM",
    "n_layers": 4,
    "n_heads": 2,
    "n_kv_heads": 1,
    "head_dim": 32,
    "hidden_size": 64,
    "intermediate_size": 256,
    "max_positions": 256,
    "rope_theta": 10000.0,  # explicit: the weights depend on it
}

# The demo's shape: four query heads per layer, each with a kv head of its own, so a head found
# by the method can be compared with matched random controls (other heads of its layer), and a
# reserved head's q/k/v rows are its own to train.
_DEMO_MODEL = {**_MODEL, "n_heads": 4, "n_kv_heads": 4, "hidden_size": 128}

# The ground truth of the demo (docs/toy.md): these heads are silenced while the base trains
# (their edges score exactly 0 in the base), and SFT may change only them and the MLPs.
_RESERVED = [[1, 3], [2, 3], [3, 3]]

# In layers 1-3 the base trains one head (H0); H1 and H2 are silenced while it trains and then
# become copies of H0, each with a third of its output (train.copy_heads), perturbed by noise and
# trained on with head dropout (the "regrow" phase), so they grow into different heads that stay
# redundant, as heads of large models are: losing one costs little, so the matched random
# controls (other heads of a layer) measure what losing a base head costs, not a tiny model's only
# head. (With three distinct base heads per layer, a control that hit a layer's indispensable
# head hurt as much as ablating the emergent heads: the ablation beat 85% of 20 controls on two
# draws; docs/toy.md.) Layer 0 keeps four heads of its own: copying it too weakened the base.
_COPIES = [[[layer, 0], [[layer, 1], [layer, 2]]] for layer in (1, 2, 3)]

# Every number that shapes the zoo. Step counts and learning rates were chosen so the full build
# takes about 14 minutes on 2 CPU cores, and so the demo's findings held on two draws
# (SPARKQL_ZOO_SEED=0 and 1 with another CPU code path; docs/toy.md).
PRESETS: dict[str, dict] = {
    "full": {
        "seed": 0,
        "model": _DEMO_MODEL,
        # The base traces only easy problems (one line): chaining lines is new to SFT.
        "data": {"trace_share": 0.6, "trace_kinds": ["easy"], "instruction_share": 0.0},
        "base": {"steps": 600, "batch": 64, "lr": 5e-3, "warmup": 10, "reserved_heads": _RESERVED,
                 "copies": _COPIES,
                 "regrow": {"steps": 200, "lr": 2e-3, "warmup": 10, "noise": 0.3, "head_dropout": 0.25}},
        "sft": {"steps": 800, "batch": 32, "lr": 3e-3, "save_every": 80,
                "train_only": {"heads": _RESERVED, "mlp": True}},
        # GRPO starts from SFT's first checkpoint (80 steps, a tenth of the run), as RL runs start
        # from a short SFT warm-up, and trains every weight. From the base, GRPO's reward rose but its
        # circuits did not move: it sharpened what the base does. From the warm-up, the reward rises
        # (0.14 -> 0.21 and 0.16 -> 0.18 by quarter on two draws) while base heads leave and rejoin
        # the circuit (docs/toy.md). lr 1e-4 with 16 prompts a step: at 3e-4 with 8, from the base,
        # the reward fell (0.23 -> 0.14 by quarter) and easy problems went from 60% to 29%.
        "grpo": {"steps": 160, "prompts": 16, "group": 8, "lr": 1e-4, "temperature": 1.0,
                 "max_new_tokens": 40, "save_every": 20, "from_sft_step": 80},
        "eval": {"problems": 80},
    },
    "tiny": {
        "seed": 0,
        "model": _MODEL,
        "data": {"trace_share": 0.3, "instruction_share": 0.0},
        "base": {"steps": 300, "batch": 64, "lr": 5e-3, "warmup": 10},
        "sft": {"steps": 160, "batch": 32, "lr": 1e-3, "save_every": 80},
        "grpo": {"steps": 20, "prompts": 8, "group": 8, "lr": 3e-4, "temperature": 1.0,
                 "max_new_tokens": 40, "save_every": 10},
        "eval": {"problems": 80},
    },
}

SERIES = ("base", "sft", "grpo")


def preset_name(preset: str | None = None) -> str:
    """The preset in use: the argument, else ``$SPARKQL_ZOO_PRESET``, else ``full``."""
    name = preset or os.environ.get("SPARKQL_ZOO_PRESET") or DEFAULT_PRESET
    if name not in PRESETS:
        raise SparkError(
            f"unknown zoo preset {name!r}",
            hint=f"use one of: {', '.join(PRESETS)} (SPARKQL_ZOO_PRESET)",
        )
    return name


def recipe(preset: str | None = None) -> dict:
    """The full recipe of a preset (a copy), as recorded in ``zoo.json``.

    ``$SPARKQL_ZOO_SEED`` replaces the training seed and ``$SPARKQL_ZOO_THREADS`` the torch thread
    count of the build (1 by default; another count changes the order of float reductions, as
    another CPU does): both enter the recipe, hence its hash and cache folder, so a study can be
    rerun on a zoo trained another way to check that a finding does not hang on one draw."""
    name = preset_name(preset)
    r = json.loads(json.dumps({"preset": name, "version": RECIPE_VERSION, **PRESETS[name]}))
    for key, env in (("seed", "SPARKQL_ZOO_SEED"), ("threads", "SPARKQL_ZOO_THREADS")):
        value = os.environ.get(env)
        if value:
            if not value.isdigit() or (key == "threads" and int(value) < 1):
                raise SparkError(f"{env} = {value!r} is not a {'positive ' if key == 'threads' else ''}whole number",
                                 hint=f"unset it, or set e.g. {env}=1")
            r[key] = int(value)
    return r


def _code_files() -> list[Path]:
    """The source files that build the zoo: editing any of them changes what gets built.

    Found without importing them (``sparkql.runtime`` is import-free at package level),
    so this stays torch-free."""
    spec = find_spec("sparkql.runtime")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - broken install
        return []
    root = Path(list(spec.submodule_search_locations)[0])
    files = sorted((root / "zoo").glob("*.py"))
    tiny = root / "models" / "tiny.py"  # the character tokenizer builder the zoo reuses
    return files + ([tiny] if tiny.is_file() else [])


def recipe_hash(preset: str | None = None) -> str:
    """sha256 of the recipe and of the code that executes it (hex). Changes when either does."""
    h = hashlib.sha256()
    h.update(json.dumps(recipe(preset), sort_keys=True).encode())
    for f in _code_files():
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def cache_root(preset: str | None = None) -> Path:
    """Where the zoo of a preset lives: ``<parent>/<preset>-<hash12>`` with parent
    ``$SPARKQL_ZOO_DIR`` when set, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/sparkql/zoo``.

    The preset and recipe hash are part of the name even under ``$SPARKQL_ZOO_DIR`` so
    presets never share a directory and a changed recipe never reads a stale build."""
    name = preset_name(preset)
    parent = os.environ.get("SPARKQL_ZOO_DIR")
    if parent:
        base = Path(parent).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "sparkql" / "zoo"
    return base.resolve() / f"{name}-{recipe_hash(name)[:12]}"


def _checkpoint_steps(stage: dict) -> list[int]:
    every = stage["save_every"]
    steps = list(range(every, stage["steps"] + 1, every))
    if not steps or steps[-1] != stage["steps"]:
        steps.append(stage["steps"])  # the final model is always a checkpoint
    return steps


def layout(preset: str | None = None) -> dict[str, list[int] | None]:
    """Series name -> checkpoint steps in order (None: a single model directory)."""
    r = recipe(preset)
    return {"base": None, "sft": _checkpoint_steps(r["sft"]), "grpo": _checkpoint_steps(r["grpo"])}


_ZOO_PATH = re.compile(r"^zoo:(?P<series>[A-Za-z_]+)(?:/checkpoint-(?P<step>\d+))?/?$")


def parse_zoo_path(path: str, preset: str | None = None) -> tuple[str, int | None]:
    """``zoo:sft/checkpoint-200`` -> ("sft", 200); ``zoo:base`` -> ("base", None).

    SparkError for an unknown series or a step the recipe does not save."""
    m = _ZOO_PATH.match(path.strip())
    lay = layout(preset)
    if not m:
        raise SparkError(
            f"not a zoo model path: {path!r}",
            hint='write "zoo:base", "zoo:sft/checkpoint-*" or "zoo:grpo/checkpoint-20"',
        )
    series, step = m["series"], m["step"]
    if series not in lay:
        raise SparkError(f"the zoo has no series {series!r}", hint=f"zoo series: {', '.join(lay)}")
    steps = lay[series]
    if steps is None:
        if step is not None:
            raise SparkError(f"zoo:{series} is a single model, not a checkpoint series", hint=f'write "zoo:{series}"')
        return series, None
    if step is None:
        raise SparkError(
            f"zoo:{series} is a checkpoint series",
            hint=f'write "zoo:{series}/checkpoint-*" (all) or one of checkpoint-{steps[0]} .. checkpoint-{steps[-1]}',
        )
    if int(step) not in steps:
        raise SparkError(
            f"zoo:{series} has no checkpoint-{int(step)}",
            hint=f"its checkpoints: {', '.join(f'checkpoint-{s}' for s in steps)}",
        )
    return series, int(step)


def zoo_dir(path: str, preset: str | None = None) -> Path:
    """The local directory of a zoo path (it may not exist until the zoo is built)."""
    series, step = parse_zoo_path(path, preset)
    root = cache_root(preset) / series
    return root if step is None else root / f"checkpoint-{step}"


def zoo_paths(preset: str | None = None) -> list[str]:
    """Every model path the zoo provides, in build order."""
    out = []
    for series, steps in layout(preset).items():
        out += [f"zoo:{series}"] if steps is None else [f"zoo:{series}/checkpoint-{s}" for s in steps]
    return out


def is_built(preset: str | None = None) -> bool:
    """True when the zoo of this recipe is complete on disk (its manifest is written last)."""
    manifest = cache_root(preset) / "zoo.json"
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("recipe_hash") == recipe_hash(preset)
    except (OSError, ValueError):
        return False


def model_shape(preset: str | None = None) -> dict:
    """The zoo models' shape, as the compiler reports it for a not-yet-built model."""
    m = recipe(preset)["model"]
    shape = {k: m[k] for k in ("architecture", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_size")}
    return {**shape, "context_length": m["max_positions"]}
