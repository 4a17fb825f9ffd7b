"""The paper's figures, drawn from a results store with matplotlib (PNG and SVG).

* ``cohort_<set>``: figure 2 A-B. Stacked areas of the emergent heads active at
  each checkpoint, split by cohort (the checkpoint where they first emerged);
  the newly-activated count (blue line) and the maintained base heads (red
  dashed); below, the reward curve from the training log with the reward at
  each checkpoint marked, and the correlation in the title.
* ``frequency_<set>``: figure 2 C. Layer x head grid: base heads in red,
  emergent heads in blue, intensity = activation frequency; heads active at
  the final checkpoint outlined in black.
* ``emergent_map``: figure 10. One layer x head panel per emergent set (by
  name: the post-training method), a head filled when it is emergent in any
  model of that set; and a cumulative panel counting the sets per head.
* ``passk``: figure 5. pass@k and success@k against k, one line per model /
  variant / dataset.
* ``scores``: the intact-vs-variant table (value and change against the
  intact model under the same sampling), also written as CSV.
* ``stability``: per emergent set, a head x checkpoint grid of each emergent
  head's selection stability (share of a top_n +-30% x tau grid where it is
  emergent: 1.0 whatever the cutoffs; the ``head_stability`` view).
* ``controls``: per chosen intervention with random controls, the controls'
  pass@1 deltas as dots and the intervention's as a red line, with the share of
  controls it beats (the ``scores`` view's control columns).

Sizes are fixed (``SIZES``, in pixels at ``DPI``) so figures line up in a
paper or a report; SVG text stays text (``svg.fonttype = none``) so labels can
be searched and edited. A figure whose data is absent is skipped with a
one-line note. Torch-free; matplotlib is imported inside the functions and
only its object API is used (no pyplot state).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

DPI = 100
SIZES: dict[str, tuple[int, int]] = {
    "cohort": (1000, 700),
    "frequency": (800, 700),
    "emergent_map": (1200, 600),
    "passk": (1200, 500),
    "scores": (1200, 600),  # the least: more rows or more than SCORE_COLUMNS columns make it taller
    "stability": (1000, 600),
    "controls": (1000, 500),
}
SCORE_COLUMNS = 8  # metric columns per panel of the scores table
SCORE_ROW_PX = 30
SCORE_CHARS = 13  # width of a score column, in characters: "84.9 (-15.1)"
BLUE, RED = "#1f5fbf", "#c0392b"


@dataclass
class FigureResult:
    name: str
    files: list[Path] = field(default_factory=list)
    skipped: str | None = None
    """Why the figure was not drawn (no data)."""


def _rows(con, sql: str, params=()) -> list[dict]:
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _new_figure(kind: str, layout: str | None = None):
    from matplotlib.figure import Figure

    w, h = SIZES[kind]
    return Figure(figsize=(w / DPI, h / DPI), dpi=DPI, layout=layout)


def _save(fig, out: Path, stem: str, formats: tuple[str, ...]) -> list[Path]:
    import matplotlib

    out.mkdir(parents=True, exist_ok=True)
    files = []
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "sparkql"}):
        for fmt in formats:
            p = out / f"{stem}.{fmt}"
            # no bbox_inches="tight": it would change the pixel size
            fig.savefig(p, format=fmt, dpi=DPI, metadata={"Software": "sparkql"} if fmt == "png" else None)
            files.append(p)
    return files


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _grid_shape(con, model_ids: list[str], seen: list[tuple[int, int]]) -> tuple[int, int]:
    """(n_layers, n_heads) from the models table, else from the heads seen."""
    if model_ids:
        got = con.execute(
            "SELECT max(n_layers), max(n_heads) FROM models WHERE list_contains(?, model_id)", [model_ids]
        ).fetchall()[0]
        if got and got[0] and got[1]:
            return int(got[0]), int(got[1])
    if not seen:
        return 1, 1
    return max(l for l, _ in seen) + 1, max(h for _, h in seen) + 1


def _cohorts(con) -> list[dict]:
    return _rows(con, "SELECT DISTINCT cohort_key, set_name FROM cohort_checkpoints ORDER BY set_name, cohort_key")


NO_COHORTS = "no cohort results (a study needs `cohort SET`)"


def _cohort_stem(kind: str, cohort: dict, cohorts: list[dict]) -> str:
    """File stem of one cohort's figure: the set's name, plus its key where two cohorts share it."""
    name = cohort["set_name"]
    shared = sum(c["set_name"] == name for c in cohorts) > 1
    return f"{kind}_{_safe(name)}" + (f"_{cohort['cohort_key'][:8]}" if shared else "")


# --- figure 2 A-B -------------------------------------------------------------------------------
def cohort_figure(con, out: Path, formats=("png", "svg")) -> FigureResult:
    import matplotlib

    res = FigureResult("cohort")
    cohorts = _cohorts(con)
    if not cohorts:
        res.skipped = NO_COHORTS
        return res
    for c in cohorts:
        key = c["cohort_key"]
        ck = _rows(con, "SELECT idx, step, newly_activated, maintained, reward, reward_key, model_id "
                        "FROM cohort_checkpoints WHERE cohort_key = ? ORDER BY idx", [key])
        areas = _rows(con, "SELECT idx, cohort, n_heads FROM cohort_areas WHERE cohort_key = ?", [key])
        steps = [r["step"] for r in ck]
        cohorts_sorted = sorted({a["cohort"] for a in areas})
        fig = _new_figure("cohort", layout="constrained")  # constrained: the colour bar spans both panels
        ax, axr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        if cohorts_sorted:
            cmap = matplotlib.colormaps["viridis"]
            stacks = []
            for co in cohorts_sorted:
                by_idx = {a["idx"]: a["n_heads"] for a in areas if a["cohort"] == co}
                stacks.append([by_idx.get(r["idx"], 0) for r in ck])
            colors = [cmap(i / max(len(cohorts_sorted) - 1, 1)) for i in range(len(cohorts_sorted))]
            few = len(cohorts_sorted) <= 8  # a legend entry per cohort; beyond that a colour bar
            ax.stackplot(steps, stacks, labels=[f"cohort {co}" for co in cohorts_sorted] if few else (),
                         colors=colors, alpha=0.55)
            if not few:
                from matplotlib.cm import ScalarMappable
                from matplotlib.colors import Normalize

                sm = ScalarMappable(norm=Normalize(min(cohorts_sorted), max(cohorts_sorted)), cmap=cmap)
                # attached to both panels so their x axes stay aligned
                fig.colorbar(sm, ax=[ax, axr], fraction=0.03, pad=0.01).set_label("cohort (step first emerged)", fontsize=8)
        ax.plot(steps, [r["newly_activated"] for r in ck], color=BLUE, marker="o", lw=2, label="newly activated")
        ax.plot(steps, [r["maintained"] for r in ck], color=RED, ls="--", marker="s", lw=2, label="maintained (base)")
        ax.set_ylabel("heads")
        ax.set_title(f"(A) emergent heads across checkpoints: {c['set_name']}")
        ax.legend(loc="upper left", fontsize=7, ncol=2, framealpha=0.8)
        ax.grid(alpha=0.3)
        # (B) the reward curve: the whole training log, and the value at each checkpoint
        reward_key = next((r["reward_key"] for r in ck if r["reward_key"]), None)
        if reward_key:
            ids = [r["model_id"] for r in ck]
            curve = _rows(con, "SELECT step, avg(value) AS value FROM rewards WHERE key = ? AND list_contains(?, model_id) "
                               "GROUP BY step ORDER BY step", [reward_key, ids])
            axr.plot([p["step"] for p in curve], [p["value"] for p in curve], color="#555555", lw=1, label=reward_key)
            pts = [(r["step"], r["reward"]) for r in ck if r["reward"] is not None]
            axr.plot([p[0] for p in pts], [p[1] for p in pts], color="black", marker="o", ls="", label="at checkpoint")
            got = con.execute("SELECT reward_newly_corr FROM cohort_summary WHERE cohort_key = ?", [key]).fetchall()
            corr = got[0][0] if got else None
            if corr is not None and not math.isnan(corr):
                r_txt = f"  (r with newly activated = {corr:.2f})"
            else:  # fewer than two rewards, or no variation: say so rather than print nan
                r_txt = "  (r with newly activated: undefined)"
            axr.set_title(f"(B) reward curve{r_txt}")
            axr.set_ylabel(reward_key)
            axr.legend(loc="best", fontsize=7)
        else:
            axr.set_title("(B) reward curve: no trainer_state.json log in the checkpoints")
        axr.set_xlabel("training step")
        axr.grid(alpha=0.3)
        res.files += _save(fig, out, _cohort_stem("cohort", c, cohorts), formats)
    return res


# --- figure 2 C ---------------------------------------------------------------------------------
def frequency_figure(con, out: Path, formats=("png", "svg")) -> FigureResult:
    import numpy as np
    from matplotlib.patches import Rectangle

    res = FigureResult("frequency")
    cohorts = _cohorts(con)
    if not cohorts:
        res.skipped = NO_COHORTS
        return res
    for c in cohorts:
        key = c["cohort_key"]
        heads = _rows(con, "SELECT layer, head, origin, activation_frequency AS f, survives FROM cohort_heads "
                           "WHERE cohort_key = ?", [key])
        members = [r[0] for r in con.execute(
            "SELECT DISTINCT base_model_id FROM cohort_members WHERE cohort_key = ? "
            "UNION SELECT DISTINCT model_id FROM cohort_members WHERE cohort_key = ?", [key, key]).fetchall()]
        L, H = _grid_shape(con, members, [(h["layer"], h["head"]) for h in heads])
        rgba = np.ones((L, H, 4))
        for h in heads:
            base = np.array([0.75, 0.22, 0.17]) if h["origin"] == "base" else np.array([0.12, 0.37, 0.75])
            f = float(h["f"] or 0.0)
            rgba[h["layer"], h["head"], :3] = 1 - (1 - base) * (0.15 + 0.85 * f)
        fig = _new_figure("frequency")
        ax = fig.subplots()
        ax.imshow(rgba, aspect="auto", origin="lower", interpolation="nearest")
        for h in heads:
            if h["survives"]:
                ax.add_patch(Rectangle((h["head"] - 0.5, h["layer"] - 0.5), 1, 1, fill=False, ec="black", lw=1.5))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(H))
        ax.set_yticks(range(L))
        ax.tick_params(labelsize=6)
        ax.set_title(f"(C) activation frequency: {c['set_name']}\nred: base heads, blue: emergent, outline: active at the last checkpoint",
                     fontsize=9)
        fig.tight_layout()
        res.files += _save(fig, out, _cohort_stem("frequency", c, cohorts), formats)
    return res


# --- figure 10 ----------------------------------------------------------------------------------
def emergent_map_figure(con, out: Path, formats=("png", "svg")) -> FigureResult:
    import numpy as np

    res = FigureResult("emergent_map")
    rows = _rows(con, "SELECT set_name, model_id, layer, head FROM head_sets WHERE kind = 'diff'")
    if not rows:
        res.skipped = "no emergent head sets (a study needs `circuit D on M diff B`)"
        return res
    methods = sorted({r["set_name"] for r in rows})
    L, H = _grid_shape(con, sorted({r["model_id"] for r in rows}), [(r["layer"], r["head"]) for r in rows])
    per = {m: {(r["layer"], r["head"]) for r in rows if r["set_name"] == m} for m in methods}
    fig = _new_figure("emergent_map")
    axes = fig.subplots(1, len(methods) + 1, squeeze=False)[0]
    palette = ["#1f5fbf", "#2e8b57", "#c0392b", "#8e44ad", "#d4a017", "#16a085", "#7f8c8d"]
    for i, m in enumerate(methods):
        grid = np.zeros((L, H))
        for l, h in per[m]:
            grid[l, h] = 1
        from matplotlib.colors import ListedColormap

        axes[i].imshow(grid, cmap=ListedColormap(["white", palette[i % len(palette)]]), vmin=0, vmax=1,
                       origin="lower", aspect="auto", interpolation="nearest")
        axes[i].set_title(f"{m} ({len(per[m])})", fontsize=9)
    count = np.zeros((L, H))
    for m in methods:
        for l, h in per[m]:
            count[l, h] += 1
    im = axes[-1].imshow(count, cmap="Greys", vmin=0, vmax=max(len(methods), 1), origin="lower", aspect="auto",
                         interpolation="nearest")
    axes[-1].set_title("cumulative (sets per head)", fontsize=9)
    fig.colorbar(im, ax=axes[-1], fraction=0.08)
    for ax in axes:
        ax.set_xlabel("head")
        ax.set_xticks(range(H))
        ax.set_yticks(range(L))
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("layer")
    fig.suptitle("emergent heads by method (vs base)")
    fig.tight_layout()
    res.files += _save(fig, out, "emergent_map", formats)
    return res


# --- figure 5 -----------------------------------------------------------------------------------
def _eval_lines(con) -> list[dict]:
    return _rows(con, """
        SELECT coalesce(m.label, e.model_id) AS model, e.variant, e.dataset, x.metric, x.k, x.value, x.stderr
        FROM metrics x JOIN evals e USING (eval_id) LEFT JOIN models m USING (model_id)
        WHERE x.metric IN ('pass@k', 'success@k') AND x.k IS NOT NULL
          AND e.regraded_from IS NULL  -- the study's own gradings, not `sparkql regrade --extract` copies
        ORDER BY model, e.variant, e.dataset, x.metric, x.k""")


def passk_figure(con, out: Path, formats=("png", "svg")) -> FigureResult:
    res = FigureResult("passk")
    rows = _eval_lines(con)
    if not rows:
        res.skipped = "no pass@k metrics (a study needs `eval pass@k` and its aggregate step)"
        return res
    fig = _new_figure("passk")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, metric in zip(axes, ("pass@k", "success@k")):
        lines: dict[tuple, list] = {}
        for r in rows:
            if r["metric"] == metric:
                lines.setdefault((r["model"], r["variant"], r["dataset"]), []).append(r)
        for (model, variant, dataset), pts in lines.items():
            ks = [p["k"] for p in pts]
            vals = [p["value"] for p in pts]
            style = "-" if variant == "intact" else "--"
            line, = ax.plot(ks, vals, style, marker="o", label=f"{model} / {variant} / {dataset}")
            errs = [p["stderr"] for p in pts]
            if all(e is not None for e in errs):
                ax.fill_between(ks, [v - e for v, e in zip(vals, errs)], [v + e for v, e in zip(vals, errs)],
                                color=line.get_color(), alpha=0.12)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    res.files += _save(fig, out, "passk", formats)
    return res


# --- score table --------------------------------------------------------------------------------
def scores_figure(con, out: Path, formats=("png", "svg")) -> FigureResult:
    res = FigureResult("scores")
    rows = _rows(con, """
        SELECT coalesce(model, model_id) AS model, variant, dataset, metric, k, value, delta
        FROM scores WHERE metric IN ('pass@k', 'success@k', 'accuracy') AND regraded_from IS NULL
        ORDER BY model, variant = 'intact' DESC, variant, dataset, metric, k""")
    if not rows:
        res.skipped = "no metrics (a study needs `eval` and its aggregate step)"
        return res
    cols: list[tuple] = []
    for r in rows:
        c = (r["dataset"], r["metric"], r["k"])
        if c not in cols:
            cols.append(c)
    cols.sort(key=lambda c: (c[0], c[1], c[2] or 0))
    table: dict[tuple, dict] = {}
    for r in rows:
        table.setdefault((r["model"], r["variant"]), {})[(r["dataset"], r["metric"], r["k"])] = r

    def head(c):
        metric = c[1].replace("@k", f"@{c[2]}") if c[2] is not None else c[1]
        return f"{c[0]}\n{metric}"

    def cell(r):
        if r is None:
            return ""
        txt = f"{100 * r['value']:.1f}"
        if r["variant"] != "intact" and r["delta"] is not None:
            txt += f" ({100 * r['delta']:+.1f})"
        return txt

    # Every column, SCORE_COLUMNS to a panel: wider tables wrap into panels stacked below (each
    # with the model and variant again), and the figure grows to keep rows readable.
    panels = [cols[i: i + SCORE_COLUMNS] for i in range(0, len(cols), SCORE_COLUMNS)]
    panel_px = (len(table) + 2) * SCORE_ROW_PX  # the rows and a two-line header
    w, h = SIZES["scores"]
    h = max(h, 70 + len(panels) * (panel_px + 30))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    fig.suptitle("intact vs variants: score in % (change vs intact under the same sampling)", fontsize=10)
    top = 1 - 50 / h
    # column widths by their text (in characters): the labels as long as they are, a score "84.9 (-15.1)"
    label_chars = [max(len(x) for x in [name] + [str(k[j]) for k in table]) + 2 for j, name in enumerate(("model", "variant"))]
    full = sum(label_chars) + SCORE_CHARS * SCORE_COLUMNS
    for i, keep in enumerate(panels):
        chars = label_chars + [SCORE_CHARS] * len(keep)
        ax = fig.add_axes((0.02, top - (i + 1) * (panel_px + 30) / h + 30 / h, 0.96 * sum(chars) / full, panel_px / h))
        ax.axis("off")
        body = [[m, v] + [cell(cells.get(c)) for c in keep] for (m, v), cells in table.items()]
        t = ax.table(cellText=body, colLabels=["model", "variant"] + [head(c) for c in keep], cellLoc="center",
                     colWidths=[c / sum(chars) for c in chars], bbox=(0, 0, 1, 1))
        t.auto_set_font_size(False)
        t.set_fontsize(8)
    res.files += _save(fig, out, "scores", formats)
    p = out / "scores.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "variant", "dataset", "metric", "k", "value", "delta_vs_intact"])
        for r in rows:
            w.writerow([r["model"], r["variant"], r["dataset"], r["metric"], r["k"], r["value"], r["delta"]])
    res.files.append(p)
    return res


# --- selection stability and random controls (issue 16) -----------------------------------------
def stability_figure(con, out: Path, formats=("png", "svg")) -> FigureResult:
    import numpy as np

    res = FigureResult("stability")
    query = ("SELECT set_name, coalesce(step, -1) AS step, model, layer, head, stability{} FROM head_stability "
             "WHERE kind = 'diff' ORDER BY set_name, step, layer, head")
    try:
        rows = _rows(con, query.format(", fold_stability, folds"))
    except Exception:  # a store older than v7 has no fold columns  # noqa: BLE001
        rows = _rows(con, query.format(""))
    has_folds = any(r.get("folds") for r in rows)
    if not rows:
        res.skipped = "no emergent head sets with stability (a study needs `circuit D on M diff B`)"
        return res
    sets = sorted({r["set_name"] for r in rows})
    fig = _new_figure("stability", layout="constrained")
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    for ax, name in zip(axes, sets):
        mine = [r for r in rows if r["set_name"] == name]
        steps = sorted({r["step"] for r in mine})
        heads = sorted({(r["layer"], r["head"]) for r in mine})
        grid = np.full((len(heads), len(steps)), np.nan)
        folds: dict[tuple[int, int], str] = {}
        for r in mine:
            at = heads.index((r["layer"], r["head"])), steps.index(r["step"])
            grid[at] = r["stability"]
            if r.get("folds"):
                folds[at] = f"\n{round(r['fold_stability'] * r['folds'])}/{r['folds']}"
        im = ax.imshow(grid, cmap="Blues", vmin=0, vmax=1, aspect="auto", origin="lower", interpolation="nearest")
        for i in range(len(heads)):
            for j in range(len(steps)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}{folds.get((i, j), '')}", ha="center", va="center", fontsize=7,
                            color="white" if grid[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(steps)), [str(s) if s >= 0 else "-" for s in steps], fontsize=7)
        ax.set_yticks(range(len(heads)), [f"L{l}H{h}" for l, h in heads], fontsize=7)
        ax.set_xlabel("checkpoint step")
        ax.set_title(f"{name}: emergent at what share of cutoffs", fontsize=9)
    fig.colorbar(im, ax=axes[-1], fraction=0.08)
    fig.suptitle("selection stability (top_n +-30% in steps of 10%, tau x 0.5/1/2 when > 0; blank: not emergent "
                 "at the study's cutoffs" + ("; n/K: emergent in n of K folds of the pairs" if has_folds else "") + ")",
                 fontsize=9)
    res.files += _save(fig, out, "stability", formats)
    return res


def controls_figure(con, out: Path, formats=("png", "svg")) -> FigureResult:
    res = FigureResult("controls")
    try:
        chosen = _rows(con, "SELECT eval_id, model, variant, dataset, k, delta, controls, beats_controls FROM scores "
                            "WHERE controls > 0 AND metric = 'pass@k' AND k = 1 ORDER BY dataset, model, variant")
    except Exception:  # a store older than v6 has no control columns  # noqa: BLE001
        chosen = []
    if not chosen:
        res.skipped = "no interventions with random controls (a study needs `ablate random matching SET ...`)"
        return res
    ctl = _rows(con, """
        SELECT x.eval_id, y.delta FROM scores x JOIN scores y
          ON y.control IS NOT NULL AND y.model_id = x.model_id AND y.dataset = x.dataset
         AND y.metric = x.metric AND y.k = x.k
        JOIN evals ex ON ex.eval_id = x.eval_id JOIN evals ey ON ey.eval_id = y.eval_id
        JOIN variants vx ON vx.variant_id = ex.variant_id JOIN variants vy ON vy.variant_id = ey.variant_id
        WHERE x.controls > 0 AND x.metric = 'pass@k' AND x.k = 1 AND ex.n = ey.n
          AND ex.temperature IS NOT DISTINCT FROM ey.temperature AND vx.op = vy.op AND vx.factor = vy.factor
          AND vx.n_heads = vy.n_heads AND (vy.matched IS NULL OR vy.matched = list_sort(vx.heads))""")
    fig = _new_figure("controls", layout="constrained")
    ax = fig.subplots()
    for i, c in enumerate(chosen):
        ys = [r["delta"] for r in ctl if r["eval_id"] == c["eval_id"]]
        xs = [i + 0.25 * ((j * 0.618) % 1 - 0.5) for j in range(len(ys))]  # deterministic jitter
        ax.scatter(xs, ys, s=14, color="#7f8c8d", label="random controls" if i == 0 else None)
        ax.hlines(c["delta"], i - 0.35, i + 0.35, color=RED, lw=2.5, label="intervention" if i == 0 else None)
        ax.annotate(f"beats {c['beats_controls']:.0%} of {c['controls']}", (i, c["delta"]), xytext=(0, -12),
                    textcoords="offset points", ha="center", fontsize=8, color=RED)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(range(len(chosen)), [f"{c['variant']}\n{c['model']} · {c['dataset']}" for c in chosen], fontsize=7)
    ax.set_ylabel("pass@1 change vs intact")
    ax.set_title("interventions vs random controls (same model, op, factor, head count; "
                 "matching controls: same heads per layer, outside the set)", fontsize=9)
    ax.legend(fontsize=8)
    res.files += _save(fig, out, "controls", formats)
    return res


FIGURES: dict[str, Callable] = {
    "cohort": cohort_figure,
    "frequency": frequency_figure,
    "emergent_map": emergent_map_figure,
    "passk": passk_figure,
    "scores": scores_figure,
    "stability": stability_figure,
    "controls": controls_figure,
}


def draw_all(con, out: str | Path, only: list[str] | None = None, formats=("png", "svg")) -> list[FigureResult]:
    """Draw every figure (or those in ``only``) from an open connection into ``out``."""
    out = Path(out)
    return [FIGURES[name](con, out, formats) for name in FIGURES if not only or name in only]
