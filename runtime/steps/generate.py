"""The ``generate`` step: sample completions of one (model, variant) on one dataset.

Writes ``samples`` rows as batches finish (``ctx.write``), so a killed eval keeps what it
generated; on resume it asks the store which (problem, sample index) pairs exist and
generates only the others, each from its own seed (:func:`sparkql.runtime.generation.transformers_backend.sample_seed`).
The ``evals`` row is returned with the step's completion mark.
"""

from __future__ import annotations

import re

from sparkql.errors import SparkError
from sparkql.plan.steps import GenerateSpec, Step
from sparkql.runtime.execution.context import RunContext, StepOutput
from sparkql.runtime.grading.grader import gold_for, gpqa_options, gpqa_problem_text
from sparkql.runtime.models.interventions import Variant, check_heads, parse_head


def problem_text(grader: str, row: dict, problem_id: str, seed: int) -> str:
    """What the user turn asks: the problem, with lettered options (seeded order) for GPQA."""
    if grader == "gpqa":
        options, _ = gpqa_options(problem_id, row.get("answer"), row.get("choices"), seed)
        return gpqa_problem_text(str(row["problem"]), options)
    return str(row["problem"])


def dataset_problems(spec: GenerateSpec) -> list[dict]:
    """The dataset's rows (roles applied), first ``examples`` only; ids must be unique."""
    from sparkql.runtime.datasets import load_rows

    grader = spec.dataset.grader
    has_choices = "choices" in spec.dataset.roles
    if "answer" not in spec.dataset.roles and not (grader == "triviaqa" and has_choices):
        raise SparkError(f"dataset {spec.dataset.name} has no `answer` role, so its samples cannot be graded",
                         hint=f'map it: dataset {spec.dataset.name} = "..." (answer = "<field>")')
    roles = ["problem", "id"] + (["answer"] if "answer" in spec.dataset.roles else [])
    if grader in ("gpqa", "triviaqa") and has_choices:
        roles.append("choices")
    rows = load_rows(spec.dataset, roles=tuple(roles))
    if grader == "gpqa" and "choices" not in spec.dataset.roles:
        _gpqa_choices_from_columns(spec, rows)
    if spec.examples is not None:
        rows = rows[: spec.examples]
    seen: set[str] = set()
    for r in rows:
        if r["id"] in seen:
            raise SparkError(f"dataset {spec.dataset.name}: problem id {r['id']!r} appears twice",
                             hint="map the `id` role to a unique field, or drop the mapping to number rows")
        seen.add(r["id"])
    return rows


_INCORRECT = re.compile(r"^Incorrect Answer \d+$")


def _gpqa_choices_from_columns(spec: GenerateSpec, rows: list[dict]) -> None:
    """GPQA's own files keep the wrong options in columns ``Incorrect Answer 1..3``: without a
    ``choices`` role, take them from there (row order is the file's, as in load_rows)."""
    from sparkql.runtime.datasets import usable_records

    records = usable_records(spec.dataset)
    for i, (row, rec) in enumerate(zip(rows, records)):
        wrong = [str(rec[k]).strip() for k in sorted(rec) if _INCORRECT.match(str(k)) and rec[k] not in (None, "")]
        if not wrong:
            raise SparkError(
                f"{spec.dataset.path}: row {i + 1} has no incorrect options for GPQA",
                hint=f'map them: dataset {spec.dataset.name} = "..." (choices = "<field with a list>"), '
                     "or keep GPQA's columns `Incorrect Answer 1..3`",
            )
        row["choices"] = wrong


def load_variant(ctx: RunContext, variant_key: str | None, model_id: str) -> Variant | None:
    """The variant's concrete heads, as its intervene step resolved them."""
    if variant_key is None:
        return None
    found = ctx.query("SELECT name, op, factor, heads, model_id FROM variants WHERE variant_id = ?", [variant_key])
    if not found:
        raise RuntimeError(f"variant {variant_key[:12]} is not in the store (its intervene step must run first)")
    name, op, factor, heads, for_model = found[0]
    if for_model != model_id:
        raise RuntimeError(f"variant {name!r} edits model {for_model}, not the evaluated model {model_id}")
    return Variant(name, op, tuple(parse_head(h) for h in heads or []), float(factor or 0.0))


def eval_backend(step: Step) -> str:
    """The backend of this eval (runtime/generation/backend.py), and vLLM's limits: ``auto``
    falls back to transformers for an eval vLLM cannot sample (temperature above 2); an explicit
    ``vllm`` is a SparkError (the compiler catches it in the study; this catches ``--backend vllm``)."""
    from sparkql.runtime.generation.backend import choose_backend

    spec: GenerateSpec = step.spec  # type: ignore[assignment]
    backend = choose_backend(step.exec.backend, step.exec.device).require()
    if backend == "vllm" and spec.sampling.temperature > 2.0:
        if step.exec.backend == "auto":
            return "transformers"
        raise SparkError(f"vLLM samples at temperatures up to 2, not {spec.sampling.temperature:g}",
                         hint="lower the temperature, or use backend = transformers")
    return backend


def run_generate(step: Step, ctx: RunContext) -> StepOutput:
    spec: GenerateSpec = step.spec  # type: ignore[assignment]
    eval_id = step.key
    sp = spec.sampling
    grader = spec.dataset.grader
    rows = dataset_problems(spec)
    variant = load_variant(ctx, spec.variant_key, spec.model.model_id)
    backend = eval_backend(step)
    if backend == "vllm":
        from sparkql.runtime.generation.vllm_backend import concrete_dtype, engine_device

        device = engine_device(step.exec.device)
        dtype = concrete_dtype(spec.dtype, device)
    else:
        from sparkql.runtime.generation.vllm_backend import DTYPE_NAMES
        from sparkql.runtime.models.loading import resolve_device, resolve_dtype

        device = resolve_device(step.exec.device).type
        dtype = DTYPE_NAMES[str(resolve_dtype(spec.dtype, resolve_device(step.exec.device))).replace("torch.", "")]

    have = {(p, int(i)) for p, i in ctx.query("SELECT problem_id, sample_idx FROM samples WHERE eval_id = ?", [eval_id])}
    todo_rows = [r for r in rows if any((r["id"], i) not in have for i in range(sp.n))]

    eval_row = {
        "eval_id": eval_id, "model_id": spec.model.model_id, "variant": spec.variant,
        "variant_id": spec.variant_key, "dataset": spec.dataset.name, "n": sp.n,
        "temperature": sp.temperature, "top_p": sp.top_p, "top_k": sp.top_k, "min_p": sp.min_p,
        "max_tokens": sp.max_tokens, "seed": sp.seed, "think": spec.think, "backend": backend,
        "n_problems": len(rows), "grader": grader, "dtype": dtype, "canary_agreement": None,
        "device": device,
    }
    missing = sum(1 for r in rows for i in range(sp.n) if (r["id"], i) not in have)
    if missing == 0:
        return StepOutput(tables={"evals": [eval_row]}, summary={"generated": 0, "reused": len(have)})

    written = 0

    def store(batch) -> None:
        nonlocal written
        ctx.write({"samples": [
            {"eval_id": eval_id, "problem_id": r.problem_id, "sample_idx": r.sample_idx, "prompt": r.prompt,
             "completion": r.completion, "finish_reason": r.finish_reason, "n_tokens": r.n_tokens,
             "gold": golds[r.problem_id]}
            for r in batch
        ]})
        written += len(batch)

    golds = {r["id"]: gold_for(grader, r, r["id"], sp.seed) for r in todo_rows}
    summary: dict = {}
    task = None
    try:
        if backend == "vllm":
            from sparkql.runtime.generation.vllm_backend import generate_vllm, tokenizer_for
            from sparkql.runtime.models.config import shape_of

            path = spec.model.path
            if spec.model.base is not None:  # vLLM loads weights from a directory: the merged copy
                from sparkql.runtime.models.lora import materialize_merged

                path = str(materialize_merged(spec.model))
            tok = tokenizer_for(path, spec.model.trust_remote_code, spec.model.tokenizer)
            requests = _requests(spec, todo_rows, have, tok, grader)
            shape = shape_of(path)
            if variant is not None:
                check_heads(variant.heads, shape.n_layers, shape.n_heads, where=f"model {spec.model.label}")
            canary = _canary(spec, step, ctx, path, requests, variant, dtype, device, shape.n_heads, shape.head_dim)
            if canary is not None:
                eval_row["canary_agreement"] = canary.agreement
                summary["canary"] = round(canary.agreement, 3)
            task = _task(ctx, spec, missing)
            _, tput = generate_vllm(path, requests, sp, variant, dtype=dtype, n_heads=shape.n_heads,
                                    head_dim=shape.head_dim, model_id=spec.model.model_id,
                                    memory=step.exec.vllm_memory, device=device, on_batch=store, progress_task=task,
                                    trust_remote_code=spec.model.trust_remote_code, tokenizer=spec.model.tokenizer)
            if tput.greedy_copies:
                summary["greedy_copies"] = tput.greedy_copies
        else:
            from sparkql.runtime.generation.transformers_backend import generate_transformers
            from sparkql.runtime.models.interventions import HeadEditor

            lm = ctx.models.get(spec.model, spec.dtype, step.exec.device)
            requests = _requests(spec, todo_rows, have, lm.tokenizer, grader)
            task = _task(ctx, spec, missing)
            with HeadEditor(lm).applied(variant):
                _, tput = generate_transformers(lm, requests, sp, batch_size=step.exec.batch_size,
                                                on_batch=store, progress_task=task)
    finally:
        if task is not None:
            task.close()
    summary = {"generated": written, "reused": len(have), "tokens": tput.tokens, "tok_s": round(tput.rate, 1),
               "backend": backend, "dtype": dtype, **summary}
    return StepOutput(tables={"evals": [eval_row]}, summary=summary)


def _task(ctx: RunContext, spec: GenerateSpec, total: int):
    if ctx.progress is None:
        return None
    from rich.markup import escape  # labels such as ckpt[step=200] must not read as markup

    return ctx.progress.task(escape(f"generate {spec.model.label} {spec.variant} on {spec.dataset.name}"), total=total)


def _canary(spec: GenerateSpec, step: Step, ctx: RunContext, path: str, requests: list, variant, dtype: str,
            device: str, n_heads: int, head_dim: int):
    """The vLLM backend's greedy canary (runtime/generation/vllm_backend.py): a few of the eval's prompts
    decoded greedily by both backends with the same edit and dtype; SparkError below the
    threshold. None when switched off (``SPARKQL_VLLM_CANARY=0``)."""
    import os

    from sparkql.runtime.generation import vllm_backend as V

    if os.environ.get("SPARKQL_VLLM_CANARY", "1") == "0" or not requests:
        return None
    prompts = V.canary_prompts(requests)
    tokens = min(V.CANARY_TOKENS, spec.sampling.max_tokens)
    if ctx.log is not None:
        ctx.log(f"greedy canary: {len(prompts)} prompts x {tokens} tokens, vLLM vs transformers ({dtype} on {device})")
    reference = _reference(spec, prompts, variant, dtype, device, tokens)
    eng = V.engine_for(path, dtype, model_id=spec.model.model_id, memory=step.exec.vllm_memory, device=device,
                       trust_remote_code=spec.model.trust_remote_code, tokenizer=spec.model.tokenizer)
    return V.run_canary(eng, prompts, reference, variant, n_heads=n_heads, head_dim=head_dim, tokens=tokens,
                        label=f"{spec.model.label} {spec.variant}")


def _reference(spec: GenerateSpec, prompts: list[str], variant, dtype: str, device: str, tokens: int):
    """The transformers backend's greedy token ids for the canary, from a copy of the model
    loaded for it and freed at once. Computed before the engine starts when it is not running;
    when a running engine leaves no room on the GPU, the engine is released (the canary restarts
    it) rather than skipping the check."""
    from sparkql.runtime.generation import vllm_backend as V
    from sparkql.runtime.models.loading import OutOfMemory, free_memory, load_model

    def once():
        lm = load_model(spec.model.path, dtype=dtype, device=device, ref=spec.model, base=spec.model.base)
        try:
            return V.transformers_reference(lm, prompts, variant, tokens)
        finally:
            del lm
            free_memory()

    try:
        return once()
    except (SparkError, OutOfMemory) as e:
        if "out of memory" not in str(getattr(e, "message", e)).lower() or not V.release_engines(spec.model.model_id):
            raise
        return once()


def _requests(spec: GenerateSpec, rows: list[dict], have: set, tokenizer, grader: str) -> list:
    """One request per missing (problem, sample index); the prompt is rendered once per problem
    with the model's own chat template and stored verbatim with every sample."""
    from sparkql.runtime.generation.transformers_backend import GenRequest, sample_seed
    from sparkql.runtime.generation.prompting import render_prompt

    sp = spec.sampling
    out = []
    for r in rows:
        prompt = render_prompt(tokenizer, problem_text(grader, r, r["id"], sp.seed), think=spec.think,
                               system=spec.system, instruction=spec.instruction)
        out += [GenRequest(r["id"], i, prompt, sample_seed(sp.seed, r["id"], i))
                for i in range(sp.n) if (r["id"], i) not in have]
    return out
