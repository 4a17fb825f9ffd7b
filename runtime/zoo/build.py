"""Build the toy organism: tokenizer, base, SFT and GRPO series, then a report.

:func:`ensure_zoo` is what the runtime calls for a ``zoo:`` model path: it
returns at once when the zoo of the current recipe is on disk, and otherwise
builds it under an exclusive file lock (so two processes never build at once:
the second waits and then finds the zoo built) into a temporary directory that
is renamed into place at the end (so a killed build never leaves a half zoo
that looks complete). ``zoo.json``, written last inside the temporary
directory, records the recipe, its hash, per-stage timings and accuracies.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from sparkql import zoo as layout_mod

Log = Callable[[str], None]


@contextlib.contextmanager
def _exclusive(lock_path: Path, log: Log) -> Iterator[None]:
    """An exclusive advisory lock on ``lock_path`` (blocking; released on exit or process death)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is building the zoo ({lock_path}); waiting")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Pin torch's intra-op threads while building (the recipe's ``threads``: 1 unless
    ``$SPARKQL_ZOO_THREADS`` says otherwise). One thread: a fixed count keeps the float
    reductions, hence the weights, reproducible from the seed on any machine, and this model's
    matmuls are too small to gain from more. Measured on a busy 2-core machine, two threads
    made each step ~10x slower in CPU time (spin-waiting when other processes hold the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _is_complete(root: Path, rhash: str) -> bool:
    try:
        return json.loads((root / "zoo.json").read_text()).get("recipe_hash") == rhash
    except (OSError, ValueError):
        return False


def build_zoo(out_dir: str | Path | None = None, preset: str | None = None, force: bool = False,
              log: Log = print) -> dict:
    """Build the zoo of ``preset`` into ``out_dir`` (default: :func:`sparkql.zoo.cache_root`).

    Returns the manifest (also written to ``zoo.json``). An existing complete zoo of the same
    recipe is kept unless ``force``."""
    name = layout_mod.preset_name(preset)
    rhash = layout_mod.recipe_hash(name)
    root = Path(out_dir).resolve() if out_dir else layout_mod.cache_root(name)
    if not _is_complete(root, rhash) or force:
        _check_writable(root.parent)  # before minutes of training, not after
    from sparkql.runtime.models.loading import quiet_transformers

    try:
        with quiet_transformers():  # no "Writing model shards" bars between the step lines
            return _build_locked(root, name, rhash, force, log)
    except OSError as e:
        if e.filename is None or not str(e.filename).startswith(str(root.parent)):
            raise
        raise _unwritable(root.parent, e) from None


def _unwritable(d: Path, e: OSError):
    from sparkql.errors import SparkError

    return SparkError(f"cannot write the zoo cache {d}: {e.strerror or e}",
                      hint="set SPARKQL_ZOO_DIR to a writable directory with free space, "
                      "or build elsewhere: sparkql zoo build --out DIR")


def _check_writable(d: Path) -> None:
    # A probe of its own (not one name per pid): two builders in one process, e.g. two
    # threads, would otherwise unlink each other's probe and fail with "No such file".
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise _unwritable(d, e) from None


def _build_locked(root: Path, name: str, rhash: str, force: bool, log: Log) -> dict:
    with _exclusive(root.parent / f".{root.name}.lock", log):
        if not force and _is_complete(root, rhash):
            log(f"zoo already built: {root}")
            return json.loads((root / "zoo.json").read_text())
        # Holding the lock, any temp dir of this root is a killed build's leftover.
        for stale in root.parent.glob(f".{root.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
        try:
            manifest = _build_into(tmp, name, rhash, log)
            if root.exists():
                old = root.parent / f".{root.name}.old-{os.getpid()}"
                root.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"zoo ready: {root}")
    return manifest


def ensure_zoo(path: str) -> Path:
    """The local directory of a ``zoo:`` model path, building the zoo first when needed."""
    target = layout_mod.zoo_dir(path)  # validates the path (SparkError for a bad one)
    root = layout_mod.cache_root()
    if not _is_complete(root, layout_mod.recipe_hash()):
        build_zoo(root, log=lambda m: print(f"[zoo] {m}", flush=True))
    return target


def _build_into(out: Path, preset: str, rhash: str, log: Log) -> dict:
    """Train every stage into ``out`` (a fresh directory) and write ``zoo.json``."""
    from sparkql.runtime.models.tiny import build_char_tokenizer
    from sparkql.runtime.zoo import evaluate, train
    from sparkql.runtime.zoo.grpo import grpo

    r = layout_mod.recipe(preset)
    start = r["grpo"].get("from_sft_step")
    sft_saves = layout_mod.layout(preset)["sft"]
    if start and start not in sft_saves:  # fail now, not after the SFT stage
        raise ValueError(f"the {preset} recipe starts GRPO from sft/checkpoint-{start}, "
                         f"which SFT does not save: {sft_saves}")
    log(f"building the {preset} zoo: base {r['base']['steps']} steps, sft {r['sft']['steps']}, "
        f"grpo {r['grpo']['steps']}" + (f" (from sft/checkpoint-{start})" if start else "")
        + f", then eval on {r['eval']['problems']} problems per set; "
        "each stage prints its steps with the time left")
    seed = r["seed"]
    out.mkdir(parents=True)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    accuracy: dict[str, dict] = {}

    def stage(name: str):
        @contextlib.contextmanager
        def timed():
            t, c = time.perf_counter(), time.process_time()
            yield
            timings[name] = round(time.perf_counter() - t, 2)
            cpu[name] = round(time.process_time() - c, 2)
            log(f"{name}: {timings[name]:.1f}s wall, {cpu[name]:.1f}s cpu")
        return timed()

    def progress(stage_name: str, total: int | None = None, offset: int = 0) -> Callable[[dict], None]:
        """A log line per logged step; ``offset``: steps of the stage done before this part of it."""
        total = total or r[stage_name]["steps"]
        t0 = time.perf_counter()

        def show(e: dict) -> None:
            keys = ("loss", "reward", "completions/trace_share")
            step, elapsed = e["step"] + offset, time.perf_counter() - t0
            left = elapsed / (step - offset) * (total - step) if step > offset else None
            when = f"{elapsed:.0f}s" + (f", ~{left:.0f}s left in {stage_name}" if left is not None and step < total else "")
            log(f"  {stage_name} step {step}/{total}: " + ", ".join(f"{k}={e[k]}" for k in keys if k in e) + f"  ({when})")
        return show

    with _threads(r.get("threads", 1)):
        with stage("tokenizer"):
            tok = build_char_tokenizer(None)
        with stage("base"):
            train.seed_everything(seed)
            model = train.new_model(r["model"], tok, seed)
            enc = train.Encoder(tok)
            b = r["base"]
            # Reserved heads and the future copies are silenced while the base trains; the copies
            # then take their source's weights (train.copy_heads).
            copies = b.get("copies", [])
            silent = [*b.get("reserved_heads", []), *(t for _, targets in copies for t in targets)]
            rg = b.get("regrow")
            base_steps = b["steps"] + (rg["steps"] if rg else 0)
            hist = train.supervised(model, enc, train.base_batch(r), steps=b["steps"], batch=b["batch"], lr=b["lr"],
                                    warmup=b["warmup"], seed=seed, log_every=50,
                                    on_log=progress("base", total=base_steps), reserved_heads=silent)
            train.copy_heads(model, copies, noise=rg["noise"] if rg else 0.0, seed=seed + 11)
            if rg:
                # The copies, perturbed, train on with the rest of the base, each dropped from an
                # example with probability head_dropout: they become different heads that stay
                # redundant (no one of them is indispensable).
                group = [h for src, targets in copies for h in (src, *targets)]
                more = train.supervised(model, enc, train.base_batch(r), steps=rg["steps"], batch=b["batch"],
                                        lr=rg["lr"], warmup=rg["warmup"], seed=seed + 5, log_every=50,
                                        on_log=progress("base", total=base_steps, offset=b["steps"]),
                                        reserved_heads=b.get("reserved_heads", []),
                                        head_dropout=(group, rg["head_dropout"]))
                hist += [{**e, "step": e["step"] + b["steps"]} for e in more]
                hist = [{**e, "epoch": round(e["step"] / base_steps, 4)} for e in hist]
            train.save_hf(model, tok, out / "base")
            train.write_trainer_state(out / "base", step=base_steps, max_steps=base_steps, log_history=hist,
                                      save_every=base_steps, batch_size=b["batch"])
        with stage("sft"):
            sft_model = copy.deepcopy(model)
            s = r["sft"]
            train.supervised(sft_model, enc, train.sft_batch(r), steps=s["steps"], batch=s["batch"], lr=s["lr"],
                             warmup=max(1, s["steps"] // 10), seed=seed + 1, out_dir=out / "sft",
                             save_every=s["save_every"], tokenizer=tok, log_every=10, on_log=progress("sft"),
                             train_only=s.get("train_only"))
        with stage("grpo"):
            # GRPO starts from the base, or (the demo) from an early SFT checkpoint, as RL runs
            # start from a short SFT warm-up: loaded back from its directory, so the series
            # continues exactly the model that checkpoint holds.
            grpo_model = (train.load_hf(out / "sft" / f"checkpoint-{start}") if start
                          else copy.deepcopy(model))
            grpo_hist = grpo(grpo_model, tok, r["grpo"], seed=seed + 2,
                             instruction_share=r["data"]["instruction_share"], out_dir=out / "grpo",
                             on_log=progress("grpo"))
        with stage("eval"):
            n = r["eval"]["problems"]
            for label, m in (("base", model), ("sft", sft_model), ("grpo", grpo_model)):
                accuracy[label] = evaluate.report(m, tok, n)
                log(f"  {label}: " + ", ".join(
                    f"{k} {v['accuracy']:.0%} (traces {v['trace_share']:.0%})" for k, v in accuracy[label].items()))

    manifest = {
        "preset": preset,
        "recipe_hash": rhash,
        "recipe": r,
        "layout": layout_mod.layout(preset),
        "timings_s": timings,
        "cpu_s": cpu,
        "accuracy": accuracy,
        "reward_curve": reward_summary(grpo_hist),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "zoo.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def reward_summary(history: list[dict], parts: int = 4) -> dict:
    """Mean GRPO reward over the first and last quarter of training, and per quarter."""
    rewards = [e["reward"] for e in history]
    if not rewards:
        return {}
    size = max(1, len(rewards) // parts)
    chunks = [rewards[i: i + size] for i in range(0, len(rewards), size)][:parts]
    means = [round(sum(c) / len(c), 4) for c in chunks]
    return {"first": means[0], "last": means[-1], "by_quarter": means, "steps": len(rewards)}
