"""A small hand-made study for the store and executor tests (no torch, no compiler).

A base model and a 4-checkpoint series (directories with config.json, an empty
model.safetensors and a trainer_state.json like the HF Trainer writes), a test-only ``circuit``
handler that writes known circuit heads (so cohorts are known exactly), and
a Plan built from the real step specs: load_model -> circuit -> diff -> cohort
-> heads. Imported both by the tests and by ``runner.py`` in subprocesses.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sparkql.plan.steps import (
    CircuitParams, CircuitSpec, CohortMember, CohortSpec, DatasetRef, HeadExpr, HeadSetSpec, LoadModelSpec,
    ModelRef, Plan, Step, step_key,
)

N_LAYERS, N_HEADS = 4, 4
STEPS = [100, 200, 300, 400]

# Circuit heads per model (None = base). Base: (0,0) (0,1) (1,0) (2,3).
HEADS: dict[int | None, set[tuple[int, int]]] = {
    None: {(0, 0), (0, 1), (1, 0), (2, 3)},
    100: {(0, 0), (0, 1), (1, 0), (1, 1), (3, 2)},
    200: {(0, 0), (0, 1), (1, 0), (1, 1), (3, 2), (2, 0)},
    300: {(0, 0), (1, 0), (2, 3), (3, 2), (2, 0)},
    400: {(0, 0), (1, 0), (3, 2), (3, 0), (1, 1)},
}


def reward(step: int) -> float:
    """Accuracy reward logged every 10 steps: rises, dips at 300, recovers."""
    return round(0.2 + 0.001 * step - (0.15 if 250 < step <= 300 else 0.0), 6)


def make_model_dirs(root: Path) -> dict[int | None, Path]:
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "num_hidden_layers": N_LAYERS,
        "num_attention_heads": N_HEADS, "num_key_value_heads": 2, "hidden_size": 32,
    }
    dirs: dict[int | None, Path] = {}
    base = root / "base"
    base.mkdir(exist_ok=True)
    (base / "config.json").write_text(json.dumps(config))
    (base / "model.safetensors").write_bytes(b"")  # `check` wants weights beside config.json; none are read
    (base / "tokenizer.json").write_text("{}")  # and a tokenizer
    dirs[None] = base
    for s in STEPS:
        d = root / "run" / f"checkpoint-{s}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(config))
        (d / "model.safetensors").write_bytes(b"")
        (d / "tokenizer.json").write_text("{}")
        hist = [{"step": t, "epoch": t / 400, "loss": 1.0 / t, "rewards/accuracy_reward": reward(t),
                 "reward": reward(t) + 0.5, "reward_std": 0.1, "learning_rate": 1e-6}
                for t in range(10, s + 1, 10)]
        (d / "trainer_state.json").write_text(json.dumps({"global_step": s, "log_history": hist}))
        dirs[s] = d
    return dirs


def _step(kind: str, spec, label: str, deps: list[str]) -> Step:
    return Step(key=step_key(kind, spec), kind=kind, label=label, deps=deps, spec=spec)


def build_plan(root: Path) -> Plan:
    dirs = make_model_dirs(root)
    dataset = DatasetRef(name="toy", path=str(root / "toy.jsonl"), format="jsonl", roles={"problem": "q"},
                         fingerprint="toy")
    params = CircuitParams(ig_steps=2, top_n=10, tau=0.0)
    steps: list[Step] = []
    base = ModelRef(name="base", label="base", path=str(dirs[None]), fingerprint="fp-base", model_id="base0001")
    refs = [ModelRef(name="ckpt", label=f"ckpt[step={s}]", path=str(dirs[s]), step=s, index=i,
                     series_len=len(STEPS), fingerprint=f"fp-{s}", model_id=f"ckpt{s:04d}")
            for i, s in enumerate(STEPS)]
    loads, circuits = {}, {}
    for r in [base] + refs:
        st = _step("load_model", LoadModelSpec(model=r), f"load {r.label}", [])
        steps.append(st)
        loads[r.model_id] = st.key
        cst = _step("circuit", CircuitSpec(model=r, dataset=dataset, params=params, scores_key=f"scores-{r.model_id}"),
                    f"circuit toy on {r.label}",
                    [st.key])
        steps.append(cst)
        circuits[r.model_id] = cst.key
    members = []
    for r in refs:
        expr = HeadExpr(op="minus", args=[HeadExpr(op="circuit", ref=circuits[r.model_id]),
                                          HeadExpr(op="circuit", ref=circuits[base.model_id])])
        d = _step("diff", HeadSetSpec(kind="diff", name="emergent", model=r, expr=expr), f"emergent on {r.label}",
                  [circuits[r.model_id], circuits[base.model_id]])
        steps.append(d)
        members.append(CohortMember(model=r, set_key=d.key, circuit_key=circuits[r.model_id]))
    coh = CohortSpec(name="emergent", series=members, base=base, base_circuit_key=circuits[base.model_id])
    steps.append(_step("cohort", coh, "cohort emergent",
                       [m.set_key for m in members] + [m.circuit_key for m in members] + [circuits[base.model_id]]))
    last = members[-1]
    picked = HeadExpr(op="union", args=[HeadExpr(op="literal", heads=[(2, 2)]), HeadExpr(op="set", ref=last.set_key)])
    steps.append(_step("heads", HeadSetSpec(kind="heads", name="picked", model=refs[-1], expr=picked, top_k=3),
                       "heads picked", [last.set_key]))
    return Plan(study=str(root / "hand.spark"), steps=steps)


def run_fake_circuit(step: Step, ctx) -> "object":
    """Test-only circuit handler: writes the known heads of HEADS, with scores that depend on
    the head and the model, plus a few edges. SPARKQL_TEST_SLEEP slows it down (seconds);
    with SPARKQL_TEST_GATE=PATH the last checkpoint's circuit touches PATH.waiting and waits for PATH;
    with SPARKQL_TEST_HOLD=PATH the first checkpoint's circuit touches PATH and then waits (up to
    300 s) for a signal, so a test can interrupt a step that is surely in flight."""
    from sparkql.runtime.execution.context import StepOutput

    delay = float(os.environ.get("SPARKQL_TEST_SLEEP", "0") or 0)
    if delay:
        time.sleep(delay)
    spec = step.spec
    hold = os.environ.get("SPARKQL_TEST_HOLD")
    if hold and spec.model.step == STEPS[0]:
        Path(hold).touch()
        end = time.monotonic() + 300  # long: on a loaded machine the test may signal late
        while time.monotonic() < end:  # a Ctrl-C (KeyboardInterrupt) ends the wait
            time.sleep(0.02)
    gate = os.environ.get("SPARKQL_TEST_GATE")
    if gate and spec.model.step == STEPS[-1]:  # the last circuit waits until the test opens the gate
        Path(gate + ".waiting").touch()
        end = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < end:
            time.sleep(0.02)
    s = spec.model.step
    active = HEADS[s]
    nodes = [{"circuit_id": step.key, "node": "input", "kind": "input", "score": 0.0, "in_circuit": True},
             {"circuit_id": step.key, "node": "logits", "kind": "logits", "score": 0.0, "in_circuit": True}]
    for l in range(N_LAYERS):
        for h in range(N_HEADS):
            nodes.append({"circuit_id": step.key, "node": f"a{l}.h{h}", "layer": l, "head": h, "kind": "head",
                          "score": round(1.0 + 0.1 * l + 0.01 * h + (s or 0) / 10000, 6),
                          "in_circuit": (l, h) in active})
        nodes.append({"circuit_id": step.key, "node": f"m{l}", "layer": l, "kind": "mlp", "score": 0.5,
                      "in_circuit": True})
    edges = {"circuit_id": [step.key] * 3, "src": ["input", "a0.h0", "m0"], "dst": ["a0.h0<q>", "m0", "logits"],
             "score": [0.3, -0.2, 0.1], "in_circuit": [True, True, False]}
    big = int(os.environ.get("SPARKQL_TEST_BIG_EDGES", "0") or 0)
    if big and s == 200:
        # more rows than a DuckDB row group (122,880): written straight to the file's blocks
        # before COMMIT (optimistic writes), the case a kill mid-commit must also leave clean
        edges = {"circuit_id": [step.key] * big, "src": [f"a{i % 7}.h{i % 3}" for i in range(big)],
                 "dst": ["logits"] * big, "score": [((i * 7919) % 1000) / 1000 for i in range(big)],
                 "in_circuit": [i % 11 == 0 for i in range(big)]}
    circuit = [{"circuit_id": step.key, "model_id": spec.model.model_id, "dataset": spec.dataset.name,
                "method": "eap_ig", "ig_steps": spec.params.ig_steps, "top_n": spec.params.top_n,
                "tau": spec.params.tau, "metric": spec.params.metric, "n_examples": 2, "n_edges": 3,
                "n_edges_in_circuit": 2, "n_heads_in_circuit": len(active)}]
    return StepOutput(tables={"circuits": circuit, "nodes": nodes, "edges": edges},
                      summary={"heads": len(active)})


def run_fake_edge_scores(step: Step, ctx) -> "object":
    """Test-only edge scoring (no torch): one ``scorings`` row; the fake circuits make up their edges."""
    from sparkql.runtime.execution.context import StepOutput

    spec = step.spec
    return StepOutput(tables={"scorings": [{"scores_id": step.key, "model_id": spec.model.model_id,
                                            "dataset": spec.dataset.name, "ig_steps": spec.params.ig_steps}]})
