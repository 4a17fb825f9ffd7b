"""Run the hand-made plan of fakes.py in a subprocess, optionally killing itself (SIGKILL) at a chosen
point, and record every handler call in a counter file.

    python runner.py ROOT DB COUNTER [--kill-in-handler LABEL | --kill-in-commit LABEL | --kill-after LABEL]
                                     [--expect-error]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fakes  # noqa: E402

from sparkql.errors import SparkError  # noqa: E402
from sparkql.runtime.execution import executor, handlers  # noqa: E402
from sparkql.store import api  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("db")
    ap.add_argument("counter")
    ap.add_argument("--kill-in-handler")
    ap.add_argument("--kill-in-commit")
    ap.add_argument("--kill-after")
    a = ap.parse_args()
    # Ctrl-C as a terminal delivers it, however the tests were started: a shell's background job
    # (`make test &` in a script) starts its children with SIGINT ignored, and Python then keeps
    # it ignored, so the Ctrl-C test's signal would never arrive.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    handlers.HANDLERS["circuit"] = "fakes:run_fake_circuit"
    handlers.HANDLERS["edge_scores"] = "fakes:run_fake_edge_scores"
    real_handler_for = executor.handler_for

    def counting_handler_for(kind):
        fn = real_handler_for(kind)

        def wrapped(step, ctx):
            with open(a.counter, "a") as f:
                f.write(step.label + "\n")
                f.flush()
                os.fsync(f.fileno())
            if step.label == a.kill_in_handler:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(step, ctx)

        return wrapped

    executor.handler_for = counting_handler_for

    committing: list[str] = []
    real_complete = api.Store.complete_step
    real_insert_all = api.insert_all

    def complete_step(self, step, output, **kw):
        committing.append(step.label)
        try:
            return real_complete(self, step, output, **kw)
        finally:
            committing.pop()

    def insert_all(con, tables):
        out = real_insert_all(con, tables)
        if committing and committing[-1] == a.kill_in_commit:
            os.kill(os.getpid(), signal.SIGKILL)  # rows inserted, transaction not committed
        return out

    api.Store.complete_step = complete_step
    api.insert_all = insert_all

    def after(rec):
        if rec.label == a.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    plan = fakes.build_plan(__import__("pathlib").Path(a.root))
    try:
        s = executor.execute(plan, a.db, live=False, on_step_done=after)
    except SparkError as e:
        print(e.render(), file=sys.stderr)
        return 2
    print(s.status, s.n_done, s.n_cached)
    return 0


if __name__ == "__main__":
    sys.exit(main())
