"""Export a stored circuit (docs/eap_ig.md): EAP-IG JSON, Graphviz DOT, SVG.

JSON follows hannamw/EAP-IG's ``Graph.to_json`` layout, which its
``Graph.from_json`` reads back::

    {"cfg": {"n_layers", "n_heads", "parallel_attn_mlp": false, "d_model"},
     "nodes": {"a0.h1": {"in_graph": true, "score": 1.23}, ...},
     "edges": {"input->a0.h1<q>": {"score": 0.5, "in_graph": true}, ...},
     "sparkql": {...provenance...}}

Node and edge names, and the source/destination orders, are the same in both
projects (``input``, ``a{l}.h{h}``, ``m{l}``, ``logits``; ``<q|k|v>`` on head
inputs), so the file loads as is (``from_json`` ignores the extra ``sparkql``
key). Every scored edge is written, with ``in_graph`` marking the circuit.

How the numbers relate to the reference library's. Ours are equation 3 of the
paper as docs/eap_ig.md states it: (clean - corrupted) activation differences,
the IG grid k = 1..m (the clean end included), averaged once over examples.
hannamw/EAP-IG's ``attribute`` (EAP-IG-inputs) uses (corrupted - clean), the
grid k = 0..m-1 (the corrupted end included, the clean end not), and divides
by the batch size twice (its metric is a batch mean, and the summed scores are
divided by the number of examples again). So for the same metric their score
is about ``-ours / batch_size``, exactly so in the limit of many steps (the two
grids are the left and right Riemann sums of the same integral); the node
``score`` here is our head score (sum of |score| over the circuit's edges in
and out of the node). Ranking by |score| (top-n) is the same up to the grid
difference.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from sparkql.errors import SparkError

FORMATS = ("json", "dot", "svg")


def _resolve(con: Any, circuit_id: str) -> tuple:
    """The circuits row for an id or a unique id prefix."""
    rows = con.execute(
        "SELECT circuit_id, model_id, dataset, metric, ig_steps, top_n, tau, n_examples, faithfulness "
        "FROM circuits WHERE circuit_id LIKE ? || '%' ORDER BY circuit_id", [circuit_id]
    ).fetchall()
    exact = [r for r in rows if r[0] == circuit_id]
    if exact:
        return exact[0]
    if len(rows) == 1:
        return rows[0]
    if not rows:
        known = [r[0][:12] for r in con.execute("SELECT circuit_id FROM circuits ORDER BY dataset LIMIT 8").fetchall()]
        raise SparkError(f"no circuit {circuit_id!r} in the store",
                         hint=("circuits: " + ", ".join(known)) if known else "run a study with a `circuit` statement first")
    raise SparkError(f"circuit id prefix {circuit_id!r} is ambiguous ({len(rows)} circuits)", hint="give more characters")


def _shape(con: Any, circuit: tuple) -> dict:
    n_layers = n_heads = d_model = None
    try:
        row = con.execute("SELECT n_layers, n_heads, hidden_size FROM models WHERE model_id = ?", [circuit[1]]).fetchone()
        if row:
            n_layers, n_heads, d_model = row
    except Exception:  # an older store without hidden_size
        row = None
    if n_layers is None or n_heads is None:
        n_layers, n_heads = con.execute(
            "SELECT max(layer) + 1, max(head) + 1 FROM nodes WHERE circuit_id = ? AND kind = 'head'", [circuit[0]]
        ).fetchone()
    return {"n_layers": int(n_layers), "n_heads": int(n_heads), "parallel_attn_mlp": False,
            "d_model": int(d_model) if d_model is not None else None}


def circuit_json(con: Any, circuit_id: str) -> dict:
    """The EAP-IG ``Graph.to_json`` dict of a stored circuit."""
    c = _resolve(con, circuit_id)
    cid = c[0]
    nodes = {
        name: {"in_graph": bool(inc), "score": float(score) if score is not None else 0.0}
        for name, inc, score in con.execute(
            "SELECT node, in_circuit, score FROM nodes WHERE circuit_id = ? ORDER BY rowid", [cid]).fetchall()
    }
    edges = {
        f"{s}->{d}": {"score": float(score), "in_graph": bool(inc)}
        for s, d, score, inc in con.execute(
            "SELECT src, dst, score, in_circuit FROM edges WHERE circuit_id = ? ORDER BY rowid", [cid]).fetchall()
    }
    return {
        "cfg": _shape(con, c),
        "nodes": nodes,
        "edges": edges,
        "sparkql": {
            "circuit_id": cid, "model_id": c[1], "model": _model_label(con, c[1]), "dataset": c[2], "metric": c[3], "ig_steps": c[4],
            "top_n": c[5], "tau": c[6], "n_examples": c[7], "faithfulness": c[8],
            "score_convention": "clean minus corrupted, IG grid k=1..m, mean over examples (docs/eap_ig.md)",
        },
    }


def _model_label(con: Any, model_id: str) -> str:
    """What a reader calls the model (``sft[step=160]``, ``base``); the id's first 12 digits when
    the store has no label for it."""
    row = con.execute("SELECT label FROM models WHERE model_id = ?", [model_id]).fetchone()
    return row[0] if row and row[0] else str(model_id)[:12]


def _q(s: str) -> str:
    return '"' + s.replace('"', '\\"') + '"'


def circuit_dot(con: Any, circuit_id: str) -> str:
    """Graphviz DOT of the circuit's nodes and edges: edge width by |score|, blue positive, red
    negative, head inputs labelled q/k/v; nodes ranked by layer."""
    c = _resolve(con, circuit_id)
    cid = c[0]
    edges = con.execute(
        "SELECT src, dst, score FROM edges WHERE circuit_id = ? AND in_circuit ORDER BY abs(score) DESC", [cid]
    ).fetchall()
    nodes = con.execute(
        "SELECT node, kind, layer, score FROM nodes WHERE circuit_id = ? AND in_circuit ORDER BY rowid", [cid]
    ).fetchall()
    top = max((abs(s) for _, _, s in edges), default=1.0) or 1.0
    colors = {"input": "#d9ead3", "head": "#cfe2f3", "mlp": "#fce5cd", "logits": "#ead1dc"}
    out = [
        f"digraph {_q('circuit_' + cid[:12])} {{",
        f'  label={_q(f"{c[2]} on {_model_label(con, c[1])}  metric={c[3]}  faithfulness=" + (f"{c[8]:.3f}" if c[8] is not None else "n/a"))};',
        "  labelloc=t; rankdir=BT; node [shape=box, style=\"rounded,filled\", fontname=Helvetica];",
    ]
    by_layer: dict[Any, list[str]] = {}
    for name, kind, layer, score in nodes:
        out.append(f"  {_q(name)} [fillcolor={_q(colors.get(kind, 'white'))}, tooltip={_q(f'{name}: {score:.4g}')}];")
        by_layer.setdefault((layer, kind == "mlp"), []).append(name)
    for (layer, _), names in sorted(by_layer.items(), key=lambda kv: (-1 if kv[0][0] is None else kv[0][0], kv[0][1])):
        if layer is not None and len(names) > 1:
            out.append("  { rank=same; " + " ".join(_q(n) for n in names) + " }")
    for s, d, score in edges:
        port = ""
        node = d
        if d.endswith(">"):
            node, port = d[:-3], d[-2]
        width = 0.6 + 4.4 * abs(score) / top
        color = "#1f77b4" if score >= 0 else "#d62728"
        label = f", label={_q(port)}" if port else ""
        out.append(f"  {_q(s)} -> {_q(node)} [penwidth={width:.2f}, color={_q(color)}{label}, "
                   f"tooltip={_q(f'{s}->{d}: {score:.4g}')}];")
    out.append("}")
    return "\n".join(out) + "\n"


def export_circuit(con: Any, circuit_id: str, fmt: str, out: str | Path) -> Path:
    """Write circuit ``circuit_id`` (or a unique prefix) from the DuckDB connection ``con`` to
    ``out`` as ``json`` (hannamw/EAP-IG layout), ``dot`` or ``svg``; returns the path."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise SparkError(f"unknown circuit export format {fmt!r}", hint="formats: " + ", ".join(FORMATS))
    out = Path(out)
    if fmt == "json":
        text = json.dumps(circuit_json(con, circuit_id))
    else:
        text = circuit_dot(con, circuit_id)
    if fmt == "svg":
        dot = shutil.which("dot")
        if dot is None:
            raise SparkError(
                "SVG export needs Graphviz's `dot` program, which is not installed",
                hint="install Graphviz (apt-get install graphviz / brew install graphviz), or export `dot` and render it elsewhere",
            )
        proc = subprocess.run([dot, "-Tsvg"], input=text.encode(), capture_output=True, timeout=300)
        if proc.returncode != 0:
            raise SparkError(f"Graphviz failed: {proc.stderr.decode(errors='replace').strip()[:300]}")
        out.write_bytes(proc.stdout)
        return out
    out.write_text(text)
    return out
