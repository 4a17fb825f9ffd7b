"""A test-only ``circuit`` handler with known heads per checkpoint step (no torch), so cohort tests
over real TRL checkpoint directories (which carry no weights) know their circuits exactly."""

from __future__ import annotations

N_LAYERS, N_HEADS = 2, 4  # the tiny Qwen2 the TRL fixtures were trained on

# base: L0H0 L1H1; newly activated heads per step: 1, 2, 1, 3 (a shape the rewards can follow or not)
HEADS: dict[int | None, set[tuple[int, int]]] = {
    None: {(0, 0), (1, 1)},
    2: {(0, 0), (1, 1), (0, 2)},
    4: {(0, 0), (1, 1), (0, 2), (1, 3)},
    6: {(0, 0), (0, 2)},
    8: {(0, 0), (1, 1), (0, 2), (1, 3), (0, 3)},
}


def run(step, ctx):
    from sparkql.runtime.execution.context import StepOutput

    spec = step.spec
    active = HEADS[spec.model.step]
    nodes = [{"circuit_id": step.key, "node": f"a{l}.h{h}", "layer": l, "head": h, "kind": "head",
              "score": 1.0 + l + 0.1 * h, "in_circuit": (l, h) in active}
             for l in range(N_LAYERS) for h in range(N_HEADS)]
    circuit = [{"circuit_id": step.key, "model_id": spec.model.model_id, "dataset": spec.dataset.name,
                "method": "eap_ig", "ig_steps": spec.params.ig_steps, "top_n": spec.params.top_n,
                "tau": spec.params.tau, "metric": spec.params.metric, "n_examples": 1, "n_edges": 0,
                "n_edges_in_circuit": 0, "n_heads_in_circuit": len(active)}]
    return StepOutput(tables={"circuits": circuit, "nodes": nodes}, summary={"heads": len(active)})


def run_scores(step, ctx):
    """The edge scoring the fake circuits stand on: nothing to compute."""
    from sparkql.runtime.execution.context import StepOutput

    return StepOutput(tables={"scorings": [{"scores_id": step.key, "model_id": step.spec.model.model_id}]})
