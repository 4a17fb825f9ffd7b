"""Grading speed and deadlines (issue 13).

(a) Throughput: integer answers (AIME-style) graded in this process on one core, the cheap exact
    path every integer answer takes; realistic completions (a thinking trace, ``</think>``, a
    short summary ending in a boxed number). Goal: >= 10,000 answers/s under either rule.
(b) No single answer may block a grade step past its deadline, whatever the text: adversarial
    completions (megabytes of unclosed ``\\boxed{``, braces, ``$``, ``\\[``, answer phrases,
    digits, operators, one endless line...) are graded by every grader under both rules; the
    in-process part (region, extraction, the fast paths) is timed per answer, and what reaches
    math-verify runs in the worker pool under the deadline. Goal: every answer done within the
    deadline (in-process time well below it; pool answers at most the deadline plus the pool's
    reaction time).

    python benchmarks/grading.py [--answers 20000] [--deadline 3] [--size 1000000]

CPU times are this process's (``time.process_time``), so other jobs on the machine do not
inflate them; wall times are printed beside them.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from sparkql.runtime.grading.grader import GRADERS, GradeRequest, VerifyPool, grade_many

THINKING = ("Let me work through this carefully. First, consider the constraints: we need the number of "
            "ordered pairs satisfying the condition, so I will count case by case. ") * 30


def integer_requests(n: int, seed: int = 0) -> list[GradeRequest]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        gold = rng.randrange(0, 1000)
        answer = gold if rng.random() < 0.5 else rng.randrange(0, 1000)
        completion = (f"{THINKING}\n</think>\n\nCounting all cases gives {rng.randrange(10, 99)} + "
                      f"{rng.randrange(10, 99)} pairs in the first part, and so on. Therefore the answer is "
                      f"$\\boxed{{{answer:03d}}}$.")
        out.append(GradeRequest(completion, str(gold), "stop", True))
    return out


def throughput(n: int) -> None:
    reqs = integer_requests(n)
    for rule in ("strict", "lenient"):
        grade_many("math", reqs[:200], extract=rule)  # warm regex caches
        c0, w0 = time.process_time(), time.perf_counter()
        out = grade_many("math", reqs, extract=rule)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        assert all(g.status == "ok" for g in out)
        rate = n / cpu
        print(f"(a) {n} integer answers, extract = {rule}: {rate:,.0f} answers/s CPU "
              f"({n / wall:,.0f}/s wall; {len(reqs[0].completion):,} chars each)  goal >= 10,000/s: "
              f"{'ok' if rate >= 10_000 else 'MISSED'}")


def adversarial(size: int) -> dict[str, str]:
    rng = random.Random(1)
    printable = "".join(chr(rng.randrange(32, 127)) for _ in range(size))
    half = size // 2
    return {
        "unclosed \\boxed{": "\\boxed{" * (size // 7),
        "open braces": "{" * size,
        "deep nesting in a box": "\\boxed{" + "{" * half + "}" * half + "}",
        "unclosed \\boxed{ + last box": "\\boxed{" * (size // 7) + "\\boxed{7}",
        "dollars": "$" * size,
        "unclosed \\[": "\\[" * (size // 2),
        "unclosed \\(": "\\(" * (size // 2),
        "$$ then text": "$$" + "a" * size,
        "answer phrases": "answer: " * (size // 8),
        "final answer phrases": "The final answer is " * (size // 20),
        "answer $ pairs": "answer $" * (size // 8),
        "digits": "9" * size,
        "boxed digits": "\\boxed{" + "9" * size + "}",
        "digits and spaces": "1 " * half,
        "thousands commas": "1," * half,
        "operators": "1+" * half,
        "equals chain": "1 = " * (size // 4),
        "GSM8K markers": "#### " * (size // 5),
        "GPQA answer forms": "Answer: (" * (size // 9),
        "backslashes": "\\" * size,
        "one endless line": "word " * (size // 5),
        "many boxes in a list": "\\boxed{1}, " * (size // 11),
        "many spans in a list": "$1$, " * (size // 5),
        "random printable": printable,
    }


def deadlines(size: int, deadline: float) -> None:
    texts = adversarial(size)
    worst = (0.0, "")
    for name, text in texts.items():
        for grader in GRADERS:
            gold = {"gpqa": "B", "triviaqa": '["Jay Z"]'}.get(grader, "7")
            for rule in ("strict", "lenient"):
                # no pool: an answer that would need math-verify is marked and left out here
                # (it is timed in the pool below); this times only what runs in-process
                reqs = [GradeRequest("</think>" + text, gold, "stop", True)]
                c0 = time.process_time()
                try:
                    grade_many(grader, reqs, pool=_NoPool(), extract=rule)
                finally:
                    cpu = time.process_time() - c0
                if cpu > worst[0]:
                    worst = (cpu, f"{name} / {grader} / {rule}")
    print(f"(b) in-process grading of {len(texts)} adversarial texts of {size:,} chars x {len(GRADERS)} graders "
          f"x 2 rules: slowest {worst[0]:.3f} s CPU ({worst[1]})  goal < deadline {deadline:g} s: "
          f"{'ok' if worst[0] < deadline else 'MISSED'}")

    hard = [("10^{10^{10}} - 10^{10^{10}} + x", "10^{10^{10}} + x"),  # sympy works on a huge power
            ("x+" * 20_000 + "1", "1"),                                  # a 40 KB expression
            ("\\frac{" * 2_000 + "1" + "}{2}" * 2_000, "\\frac12")]    # deep nesting
    ordinary = [("0.5", "\\frac12"), ("\\sqrt{8}", "2\\sqrt2"), ("x^2+2x+1", "(x+1)^2"), ("\\pi/2", "90^\\circ")]
    pairs = [(g, p) for p, g in hard + ordinary]
    with VerifyPool(workers=1, timeout_s=deadline) as pool:
        pool.check([("1", "2")] * 2)  # start the workers (and the spare): start-up is not an answer's time
        w0 = time.perf_counter()
        out = pool.check(pairs)
        wall = time.perf_counter() - w0
    slowest = max(r.seconds for r in out)
    print(f"    one worker, {len(hard)} pathological answers then {len(ordinary)} ordinary ones: "
          f"{[r.status for r in out]}; each answer's time with its worker: "
          f"{', '.join(f'{r.seconds:.2f}' for r in out)} s")
    print(f"    slowest answer {slowest:.2f} s  goal <= deadline {deadline:g} s + 0.5 s: "
          f"{'ok' if slowest <= deadline + 0.5 and [r.status for r in out[:len(hard)]] == ['timeout'] * len(hard) else 'MISSED'}"
          f"; the batch took {wall:.2f} s wall (the rest: replacement workers starting, {os.cpu_count()} cores shared)")


class _NoPool:
    """Stands in for the verify pool in the in-process timing: answers it would get are
    'error' without any work, so only extraction and the fast paths are timed."""

    def check(self, pairs):
        from sparkql.runtime.grading.verify_pool import VerifyResult

        return [VerifyResult("error", False, "not verified in this timing") for _ in pairs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answers", type=int, default=20_000)
    ap.add_argument("--deadline", type=float, default=3.0)
    ap.add_argument("--size", type=int, default=1_000_000, help="characters of each adversarial text")
    args = ap.parse_args()
    throughput(args.answers)
    deadlines(args.size, args.deadline)
    print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
