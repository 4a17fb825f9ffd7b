"""TUI benchmark: how fast `sparkql tui` shows the head map of a realistic store.

    python benchmarks/tui.py [--checkpoints 30] [--db PATH] [--runs 3]

Builds (once; reused when --db names an existing file) a store of a base
model and a GRPO series of 30 checkpoints of Qwen2.5-1.5B-sized circuits:
28 layers x 12 heads, the full docs/eap_ig.md graph of 183,555 scored edges
per circuit (5.7 M edge rows in all), nodes, emergent head sets, the cohort
tables and a reward curve. Edges are generated inside DuckDB with range()
and hash() (bulk inserts, one circuit at a time like the real writer, so
zonemaps keep circuit_id lookups cheap); heads with the store's own cohort
reference code.

It then prints:
- data layer: each screen's query (connect read-only, query, close), median;
- the app, in process, headless at 80x24: start -> the head grid first
  draws the latest checkpoint's map (goal: under 1 s), [ (previous
  checkpoint) -> new map, Enter -> head detail with its strongest edges;
- the same cold: a new Python process from spawn to the head map on screen
  (interpreter start and imports included).

Figures are medians of --runs; machines shared with others are noisy, so the
CPU time of the cold process is printed beside its wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path


LAYERS, HEADS = 28, 12
EDGES_PER_CIRCUIT = 183_555
IN_CIRCUIT_FRACTION = 5000 / EDGES_PER_CIRCUIT  # top-n 5000 of docs/eap_ig.md


def _h(*parts: object) -> int:
    """A stable hash (Python's hash() is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def series_heads(n_checkpoints: int) -> tuple[set[tuple[int, int]], list[set[tuple[int, int]]]]:
    """Base circuit heads and each checkpoint's, with heads emerging and fading over training."""
    heads = [(l, h) for l in range(LAYERS) for h in range(HEADS)]
    base = {x for x in heads if _h("base", x) % 10 == 0}
    out = []
    for i in range(n_checkpoints):
        t = (i + 1) / n_checkpoints
        kept = {x for x in base if _h("drop", x) % 100 >= 30 * t}
        new = {x for x in heads if x not in base and _h("emerge", x) % 1000 < 120 * t and _h("flicker", x, i) % 5 != 0}
        out.append(kept | new)
    return base, out


def build_store(path: Path, n_checkpoints: int) -> None:
    from sparkql.store.api import connect
    from sparkql.store.cohorts import Checkpoint, checkpoint_rows, head_rows
    from sparkql.store.write import insert

    base, series = series_heads(n_checkpoints)
    steps = [100 * (i + 1) for i in range(n_checkpoints)]
    con = connect(path, read_only=False)
    try:
        con.execute("BEGIN")
        models = [{"model_id": "m-base", "name": "base", "label": "base", "step": None}] + [
            {"model_id": f"m-{s}", "name": "ckpt", "label": f"ckpt[step={s}]", "step": s} for s in steps
        ]
        insert(con, "models", [{**m, "path": "x", "architecture": "qwen2", "n_layers": LAYERS, "n_heads": HEADS} for m in models])
        # The graph of docs/eap_ig.md, in SQL.
        con.execute(
            f"""CREATE TEMP TABLE g AS
                WITH s AS (
                    SELECT 'input' AS name, -1 AS layer, 'input' AS kind
                    UNION ALL SELECT 'a' || l || '.h' || h, l, 'head' FROM range({LAYERS}) t(l), range({HEADS}) u(h)
                    UNION ALL SELECT 'm' || l, l, 'mlp' FROM range({LAYERS}) t(l)),
                d AS (
                    SELECT 'a' || l || '.h' || h || '<' || q || '>' AS name, l AS layer, 'head' AS kind
                    FROM range({LAYERS}) t(l), range({HEADS}) u(h), (VALUES ('q'), ('k'), ('v')) v(q)
                    UNION ALL SELECT 'm' || l, l, 'mlp' FROM range({LAYERS}) t(l)
                    UNION ALL SELECT 'logits', {LAYERS}, 'logits')
                SELECT s.name AS src, d.name AS dst FROM s, d
                WHERE s.kind = 'input' OR s.layer < d.layer OR (d.kind = 'mlp' AND s.kind = 'head' AND s.layer = d.layer)"""
        )
        n_graph = con.execute("SELECT count(*) FROM g").fetchall()[0][0]
        assert n_graph == EDGES_PER_CIRCUIT, n_graph
        thr = 0.1 * (1 - IN_CIRCUIT_FRACTION)
        for i, (mid, heads) in enumerate([("m-base", base)] + [(f"m-{s}", series[j]) for j, s in enumerate(steps)]):
            cid = f"c-{mid}"
            insert(con, "circuits", [{"circuit_id": cid, "model_id": mid, "dataset": "aime24", "method": "eap_ig", "ig_steps": 100,
                                      "top_n": 5000, "tau": 0.1, "metric": "kl", "n_edges": EDGES_PER_CIRCUIT,
                                      "n_heads_in_circuit": len(heads)}])
            con.execute(
                f"""INSERT INTO edges
                    SELECT ?, src, dst, sc, abs(sc) >= {thr}
                    FROM (SELECT src, dst, ((hash(?, src, dst) % 2000001)::DOUBLE - 1e6) / 1e7 AS sc FROM g)""",
                [cid, cid],
            )
            insert(con, "nodes", [
                {"circuit_id": cid, "node": f"a{l}.h{h}", "layer": l, "head": h, "kind": "head",
                 "score": (_h(cid, l, h) % 1000) / 1000 + ((l, h) in heads), "in_circuit": (l, h) in heads}
                for l in range(LAYERS) for h in range(HEADS)
            ] + [{"circuit_id": cid, "node": f"m{l}", "layer": l, "head": None, "kind": "mlp", "score": 0.5, "in_circuit": True}
                 for l in range(LAYERS)])
            if mid != "m-base":
                s = steps[i - 1]
                emergent = sorted(heads - base)
                insert(con, "head_sets", [{"set_key": f"set-{s}", "set_name": "emergent", "model_id": mid, "layer": l, "head": h,
                                           "score": 1.0, "rank": r + 1, "kind": "diff"} for r, (l, h) in enumerate(emergent)])
        cps = [Checkpoint(i, s, frozenset(series[i])) for i, s in enumerate(steps)]
        common = {"cohort_key": "cohort", "set_name": "emergent"}
        insert(con, "cohort_checkpoints", [{**common, **r, "model_id": f"m-{r['step']}", "circuit_id": f"c-m-{r['step']}",
                                            "reward": r["idx"] / n_checkpoints, "reward_key": "reward"}
                                           for r in checkpoint_rows(base, cps)])
        insert(con, "cohort_heads", [{**common, **r} for r in head_rows(base, cps)])
        insert(con, "cohort_members", [{**common, "idx": i, "model_id": f"m-{s}", "step": s, "circuit_id": f"c-m-{s}",
                                        "set_key": f"set-{s}", "base_model_id": "m-base", "base_circuit_id": "c-m-base"}
                                       for i, s in enumerate(steps)])
        insert(con, "rewards", [{"model_id": f"m-{steps[-1]}", "step": t, "key": "reward", "value": t / steps[-1]}
                                for t in range(10, steps[-1] + 1, 10)])
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_data(db: Path, runs: int) -> dict[str, float]:
    from sparkql.tui import data

    with data.connect(db) as con:
        circuit = data.default_circuit(con)

    def q(fn):
        def go():
            with data.connect(db) as con:
                fn(con)
        return go

    return {
        "connect (read-only) + close": median_time(q(lambda con: None), runs),
        "runs + study contents": median_time(q(lambda con: (data.list_runs(con), data.study_contents(con))), runs),
        "head map (latest checkpoint)": median_time(q(lambda con: data.head_map(con, "circuit", circuit)), runs),
        "head detail (5.7 M edges scanned for the strongest)": median_time(q(lambda con: data.head_detail(con, 14, 5, circuit, "aime24")), runs),
        "cohort view": median_time(q(lambda con: data.cohort_view(con, "cohort")), runs),
        "store fingerprint (live poll)": median_time(q(data.fingerprint), runs),
    }


def _watch_grid_paint() -> list[float]:
    """Record when the head grid first draws a map (the moment the user sees it)."""
    from sparkql.tui.widgets.head_grid import HeadGrid

    stamps: list[float] = []
    original = getattr(HeadGrid.render, "__wrapped__", HeadGrid.render)

    def render(self):
        out = original(self)
        if self.head_map is not None and not stamps:
            stamps.append(time.perf_counter())
        return out

    render.__wrapped__ = original
    HeadGrid.render = render
    return stamps


async def _app_once(db: Path) -> dict[str, float]:
    from sparkql.tui.app import SparkqlApp
    from sparkql.tui.screens.head_detail import HeadDetailScreen
    from sparkql.tui.screens.headmap import HeadMapView
    from textual.widgets import DataTable

    async def until(pilot, cond, timeout: float = 30.0) -> None:
        deadline = time.perf_counter() + timeout
        while not cond():
            if time.perf_counter() > deadline:
                raise TimeoutError("the TUI did not get there in time")
            await pilot.pause(0.002)
        await pilot.pause()  # one more frame: the data is painted

    painted = _watch_grid_paint()
    t0 = time.perf_counter()
    app = SparkqlApp(db, poll_seconds=0, tab="heads")
    out = {}
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: bool(painted))
        out["start -> head map on screen"] = painted[0] - t0
        view = app.query_one(HeadMapView)
        first = view.head_map
        t1 = time.perf_counter()
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: view.head_map is not first)
        out["[ -> previous checkpoint's map"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        await pilot.press("enter")

        def detail_ready() -> bool:
            return isinstance(app.screen, HeadDetailScreen) and app.screen.query_one("#detail-edges", DataTable).row_count > 0

        await until(pilot, detail_ready)
        out["Enter -> head detail with edges"] = time.perf_counter() - t2
    return out


COLD = textwrap.dedent(
    """
    import asyncio, sys, time
    from sparkql.tui.app import SparkqlApp
    from sparkql.tui.widgets.head_grid import HeadGrid

    shown = []
    original = HeadGrid.render

    def render(self):
        out = original(self)
        if self.head_map is not None and not shown:
            shown.append(1)
            print("shown", flush=True)
        return out

    HeadGrid.render = render

    async def main():
        app = SparkqlApp(sys.argv[1], poll_seconds=0, tab="heads")
        async with app.run_test(size=(80, 24)) as pilot:
            while not shown:
                await pilot.pause(0.002)
            app.exit()

    asyncio.run(main())
    """
)


def bench_cold(db: Path, runs: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(runs):
        before = os.times()
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", COLD, str(db)], stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        walls.append(time.perf_counter() - t0)
        proc.wait()
        after = os.times()
        cpus.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
        assert line.strip() == "shown", line
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=30)
    ap.add_argument("--db", type=Path, help="reuse or create the store here (default: a temporary file)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory()
        db = Path(tmp.name) / "bench.duckdb"
    if not db.exists():
        t0 = time.perf_counter()
        build_store(db, args.checkpoints)
        print(f"built {db.name}: {args.checkpoints} checkpoints + base x {EDGES_PER_CIRCUIT:,} edges "
              f"({(args.checkpoints + 1) * EDGES_PER_CIRCUIT:,} rows, {db.stat().st_size / 2**20:.0f} MiB) "
              f"in {time.perf_counter() - t0:.1f} s")
    from sparkql.store.connection import open_db

    with open_db(db) as con:
        n_edges = con.execute("SELECT count(*) FROM edges").fetchone()[0]
    print(f"store: {n_edges:,} edge rows")

    print("\ndata layer (median of %d, each: connect read-only, query, close)" % args.runs)
    for name, t in bench_data(db, max(args.runs, 5)).items():
        print(f"  {name:<55} {t * 1000:8.1f} ms")

    print("\napp, in process, headless 80x24 (median of %d)" % args.runs)
    results = [asyncio.run(_app_once(db)) for _ in range(args.runs)]
    for key in results[0]:
        print(f"  {key:<55} {statistics.median(r[key] for r in results) * 1000:8.1f} ms")

    wall, cpu = bench_cold(db, args.runs)
    print(f"\ncold process (spawn, imports, open, head map on screen): {wall:.2f} s wall, {cpu:.2f} s CPU (median of {args.runs})")
    shown = statistics.median(r["start -> head map on screen"] for r in results)
    print(f"\nhead map shown {shown:.3f} s after the app starts: {'under' if shown < 1 else 'OVER'} the 1 s goal")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
