"""The ``edge_scores`` and ``circuit`` steps (docs/eap_ig.md).

``edge_scores``: EAP-IG on one model and dataset -> ``scorings``, ``scored_pairs``,
``edge_scores``.

1. Load the model (``ctx.models``, eager attention) and build the clean /
   corrupted pairs (:mod:`sparkql.runtime.eap.prompts`).
2. Score every edge (:mod:`sparkql.runtime.eap.engine`, fused IG batching within the
   step's memory budget ``step.exec.memory``), with a progress bar over the
   example-steps.
3. Store every edge's score, the token pairs (with the metric's targets and foils) and one
   ``scorings`` row (``scores_id`` = the step key).

``circuit``: select from stored scores (top_n, tau) and measure faithfulness -> ``circuits``,
``edges``, ``nodes``. Its key holds the selection options and the scoring's key, so a study
that changes only ``top_n``/``tau`` runs this step again and never the scoring.

1. Read the scoring's edge scores and token pairs from the store.
2. Select the circuit (:mod:`sparkql.runtime.eap.selection`) and measure its
   faithfulness (:mod:`sparkql.runtime.eap.faithfulness`) on the scoring's own pairs.
3. Return EVERY scored edge with ``in_circuit`` (so circuits can be re-selected with SQL),
   every node with its head score, and one ``circuits`` row (``circuit_id`` = the step key).
   Columns are numpy arrays: 183k edges for a 1.5B model.
"""

from __future__ import annotations

import time

import numpy as np

from sparkql.errors import SparkError
from sparkql.plan.steps import CircuitSpec, EdgeScoresSpec, Step
from sparkql.runtime.execution.context import RunContext, StepOutput


def run_edge_scores(step: Step, ctx: RunContext) -> StepOutput:
    from rich.markup import escape  # labels such as ckpt[step=200] must not read as markup

    from sparkql.runtime.eap.engine import EapIg
    from sparkql.runtime.eap.prompts import build_pairs

    spec: EdgeScoresSpec = step.spec
    params = spec.params
    t0 = time.perf_counter()
    lm = ctx.models.get(spec.model, params.dtype, step.exec.device)
    pairs = build_pairs(lm, spec.dataset, params, log=ctx.log)
    examples, row_ids = in_fold_sample(pairs.examples, pairs.ids, spec, ctx.log)
    engine = EapIg(lm)
    res = engine.run(
        examples, steps=params.ig_steps, metric=params.metric, memory=step.exec.memory,
        progress=ctx.progress, description=escape(f"EAP-IG {spec.dataset.name} on {spec.model.label}"),
        log=ctx.log,
    )
    g = res.graph
    sid = step.key
    edges = edge_columns(g, "scores_id", sid, res.scores)
    edges["score"] = edges["score"].astype(np.float64)
    n_e = len(edges["src"])
    exs = examples
    scored = {
        "scores_id": [sid] * len(exs),
        "idx": list(range(len(exs))),
        "row_id": list(row_ids),
        "clean": [list(e.clean) for e in exs],
        "corrupt": [list(e.corrupt) for e in exs],
        "target": list(res.targets),
        "foil": list(res.foils),
    }
    scoring = {
        "scores_id": sid, "model_id": spec.model.model_id, "dataset": spec.dataset.name,
        "method": params.method, "ig_steps": params.ig_steps, "metric": params.metric,
        "corrupt": params.corrupt, "think": params.think, "n_examples": res.n_examples,
        "n_dropped": pairs.n_dropped, "n_tokens": sum(len(e.clean) for e in exs), "n_edges": n_e,
        "metric_clean": res.metric_clean, "metric_corrupt": res.metric_corrupt,
        "dtype": engine.dtype_name, "device": engine.device_type, "budget_bytes": res.budget,
        "chunk_rows": res.chunk_rows, "n_chunks": res.n_chunks, "peak_bytes": res.peak_bytes,
        "seconds": time.perf_counter() - t0,
        "fold": spec.fold.index if spec.fold else None, "folds": spec.fold.k if spec.fold else None,
    }
    return StepOutput(
        tables={"scorings": [scoring], "scored_pairs": scored, "edge_scores": edges},
        summary={"examples": res.n_examples, "dropped": pairs.n_dropped, "chunk_rows": res.chunk_rows,
                 "chunks": res.n_chunks, "eap_s": round(res.seconds, 2)},
    )


def in_fold_sample(examples: list, row_ids: list[str], spec: EdgeScoresSpec, log) -> tuple[list, list[str]]:
    """The pairs a scoring uses: all of them, or with ``spec.fold`` those outside the held-out fold
    (sparkql.runtime.eap.folds)."""
    if spec.fold is None:
        return examples, row_ids
    from sparkql.runtime.eap.folds import assign_folds

    k, held = spec.fold.k, spec.fold.index
    if len(examples) < k:
        raise SparkError(f"folds = {k}, but {spec.dataset.name} has only {len(examples)} usable pairs on "
                         f"{spec.model.label}", hint=f"use folds <= {len(examples)} (pairs of unequal token length "
                         "or left unchanged by the corruption are dropped)")
    fold = assign_folds(row_ids, k, spec.params.seed)
    keep = [j for j, f in enumerate(fold) if f != held]
    log(f"fold {held + 1}/{k} of {spec.dataset.name}: {len(examples) - len(keep)} pairs held out, "
        f"{len(keep)} scored")
    return [examples[j] for j in keep], [row_ids[j] for j in keep]


def edge_columns(g, id_column: str, id_value: str, scores: np.ndarray) -> dict:
    """The rows of every edge of graph ``g`` (a scoring's or a circuit's), column-wise: the owner's
    id, the source and destination names, and the edge's score from the (sources x dests) matrix."""
    src, dst = g.edge_index
    src_names, dst_names = g.edge_names()
    return {id_column: np.full(len(src), id_value, dtype=object), "src": src_names, "dst": dst_names,
            "score": scores[src, dst]}


def stored_scoring(ctx: RunContext, scores_id: str, graph) -> tuple[dict, np.ndarray, list]:
    """The ``scorings`` row, the dense (n_sources, n_dests) score matrix and the token pairs of a
    finished ``edge_scores`` step."""
    from sparkql.runtime.eap.engine import Example

    cols = ["n_examples", "n_dropped", "metric_clean", "metric_corrupt", "dtype", "device", "seconds", "n_edges"]
    rows = ctx.query(f"SELECT {', '.join(cols)} FROM scorings WHERE scores_id = ?", [scores_id])
    if not rows:
        raise SparkError(f"the edge scores {scores_id[:12]} this circuit selects from are not in the store",
                         hint="run the study again: the scoring step runs first")
    info = dict(zip(cols, rows[0]))
    t = ctx.store.query_arrow("SELECT src, dst, score FROM edge_scores WHERE scores_id = ?", [scores_id])
    index = {(s, d): (i, j) for s, d, i, j in zip(*graph.edge_names(), *graph.edge_index)}
    scores = np.zeros((graph.n_sources, graph.n_dests), dtype=np.float64)
    src, dst, val = (t.column(c).to_pylist() for c in ("src", "dst", "score"))
    if len(src) != len(index):
        raise SparkError(f"the edge scores {scores_id[:12]} hold {len(src)} edges, the model's graph {len(index)}",
                         hint="the store was edited by hand; delete the scoring's step row to recompute it")
    at = np.array([index[(s, d)] for s, d in zip(src, dst)], dtype=np.int64).reshape(-1, 2)
    scores[at[:, 0], at[:, 1]] = val
    prs = ctx.query("SELECT clean, corrupt, target, foil FROM scored_pairs WHERE scores_id = ? ORDER BY idx",
                    [scores_id])
    examples = [Example(clean=list(c), corrupt=list(x), target=t_, foil=f) for c, x, t_, f in prs]
    return info, scores, examples


def run_circuit(step: Step, ctx: RunContext) -> StepOutput:
    from sparkql.runtime.eap.faithfulness import faithfulness
    from sparkql.runtime.eap.graph import Graph
    from sparkql.runtime.eap.selection import select

    spec: CircuitSpec = step.spec
    params = spec.params
    t0 = time.perf_counter()
    lm = ctx.models.get(spec.model, params.dtype, step.exec.device)
    g = Graph(lm.n_layers, lm.n_heads)
    info, scores, examples = stored_scoring(ctx, spec.scores_key, g)
    sel = select(g, scores, params.top_n, params.tau)
    if not sel.edges.any():
        top = float(np.abs(scores).max()) if scores.size else 0.0
        ctx.log(f"warning: the circuit of {spec.dataset.name} on {spec.model.label} is empty: no edge on an "
                f"input->logits path has |score| >= tau = {params.tau} (largest |score|: {top:.3g}); "
                f"lower tau in eap_ig(...) to keep more")
    faith = faithfulness(lm, examples, sel.edges, params.metric, [e.target for e in examples],
                         [e.foil for e in examples], memory=step.exec.memory, log=ctx.log)
    cid = step.key
    edges = edge_columns(g, "circuit_id", cid, scores)
    edges["in_circuit"] = sel.edges[tuple(g.edge_index)]
    n_e = len(edges["src"])
    node_info = g.node_info()
    nodes = {
        "circuit_id": np.full(len(node_info), cid, dtype=object),
        "node": np.array([n for n, _, _, _ in node_info], dtype=object),
        "layer": [l for _, _, l, _ in node_info],
        "head": [h for _, _, _, h in node_info],
        "kind": np.array([k for _, k, _, _ in node_info], dtype=object),
        "score": sel.node_scores.astype(np.float64),
        "in_circuit": sel.nodes.copy(),
    }
    heads = sel.heads(g)
    circuit = {
        "circuit_id": cid,
        "model_id": spec.model.model_id,
        "dataset": spec.dataset.name,
        "method": params.method,
        "ig_steps": params.ig_steps,
        "top_n": params.top_n,
        "tau": params.tau,
        "metric": params.metric,
        "n_examples": info["n_examples"],
        "n_dropped": info["n_dropped"],
        "corrupt": params.corrupt,
        "think": params.think,
        "n_edges": n_e,
        "n_edges_in_circuit": int(sel.edges.sum()),
        "n_heads_in_circuit": len(heads),
        "faithfulness": faith.value,
        "metric_clean": faith.metric_clean,
        "metric_corrupt": faith.metric_corrupt,
        "metric_circuit": faith.metric_circuit,
        # the scoring's time and this selection's: what the circuit cost
        "seconds": (info["seconds"] or 0.0) + time.perf_counter() - t0,
        "scores_id": spec.scores_key,
        "dtype": info["dtype"],
        "device": info["device"],
    }
    return StepOutput(
        tables={"circuits": [circuit], "edges": edges, "nodes": nodes},
        summary={
            "examples": info["n_examples"], "dropped": info["n_dropped"], "edges": int(sel.edges.sum()),
            "heads": len(heads), "faithfulness": None if faith.value is None else round(faith.value, 4),
            "select_s": round(time.perf_counter() - t0, 2),
        },
    )
