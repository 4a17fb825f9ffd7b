"""A catalogue of answer pairs for the graders: (id, grader, completion, gold, finish, think,
expected correct, expected status). Expected values are what a careful human grader says."""

from __future__ import annotations

import json

T = "<think>\n"  # completions start after the template's opening <think>


def boxed(ans: str, think: str = "Let me work it out.") -> str:
    return f"{think}\n</think>\n\nSo the answer is $\\boxed{{{ans}}}$."


MATH = [
    # integers (AIME fast path)
    ("int-plain", boxed("204"), "204", True),
    ("int-leading-zero", boxed("070"), "70", True),
    ("int-wrong", boxed("203"), "204", False),
    ("int-thousands-comma", boxed("1,000"), "1000", True),
    ("int-negative", boxed("-7"), "-7", True),
    ("int-dollar-inside", boxed("$33$"), "33", True),
    ("int-text-wrap", boxed("\\text{33}"), "33", True),
    ("int-vs-expression", boxed("2^{5}"), "32", True),
    ("int-vs-frac-equal", boxed("\\frac{10}{2}"), "5", True),
    ("int-trailing-period", boxed("12."), "12", True),
    # fractions
    ("frac-same", boxed("\\frac{1}{2}"), "\\frac{1}{2}", True),
    ("frac-dfrac", boxed("\\dfrac{3}{4}"), "\\frac{3}{4}", True),
    ("frac-decimal", boxed("0.5"), "\\frac{1}{2}", True),
    ("frac-slash", boxed("3/4"), "\\frac34", True),
    ("frac-unreduced", boxed("\\frac{2}{4}"), "\\frac{1}{2}", True),
    ("frac-wrong", boxed("\\frac{1}{3}"), "\\frac{1}{2}", False),
    ("frac-negative", boxed("-\\frac{1}{2}"), "-\\frac12", True),
    ("frac-sqrt", boxed("\\frac{\\sqrt{2}}{2}"), "\\frac{\\sqrt2}{2}", True),
    ("frac-rationalized", boxed("\\frac{1}{\\sqrt{2}}"), "\\frac{\\sqrt{2}}{2}", True),
    ("frac-pi", boxed("\\frac{\\pi}{3}"), "\\frac{\\pi}{3}", True),
    # intervals and tuples
    ("interval-same", boxed("[2, 5)"), "[2,5)", True),
    ("interval-open-closed-swap", boxed("[2,5)"), "(2,5]", False),
    ("interval-infinity", boxed("(-\\infty, 3]"), "(-\\infty,3]", True),
    ("interval-union", boxed("(-\\infty,1)\\cup(2,\\infty)"), "(-\\infty, 1) \\cup (2, \\infty)", True),
    ("tuple-polar", boxed("\\left(3, \\frac{\\pi}{2}\\right)"), "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("tuple-wrong", boxed("(3, \\pi)"), "\\left( 3, \\frac{\\pi}{2} \\right)", False),
    # units, percents, degrees, text
    ("unit-cm", boxed("5\\text{ cm}"), "5", True),
    ("unit-degrees", boxed("30^\\circ"), "30", True),
    ("unit-dollars", boxed("\\$18"), "18", True),
    ("percent", boxed("25\\%"), "25", True),
    ("text-answer", boxed("\\text{(C)}"), "\\text{(C)}", True),
    # algebraic forms
    ("expr-expanded", boxed("x^2+2x+1"), "(x+1)^2", True),
    ("expr-wrong", boxed("x^2+1"), "(x+1)^2", False),
    ("equation-rhs", boxed("x=3"), "3", True),
    ("sqrt-simplified", boxed("2\\sqrt{2}"), "\\sqrt{8}", True),
    ("set-order", boxed("3, 1, 2"), "1,2,3", True),
    # boxed extraction
    ("boxed-nested-braces", boxed("\\frac{\\sqrt{3}}{\\sqrt{4}}"), "\\frac{\\sqrt3}{2}", True),
    ("boxed-last-wins", "</think>First guess \\boxed{3}, no wait, \\boxed{4}.", "4", True),
    ("boxed-no-space-dollar", "</think>$\\boxed{17}$", "17", True),
    ("boxed-fbox", "</think>\\fbox{9}", "9", True),
    ("boxed-without-braces", "</think>The answer is \\boxed 9.", "9", True),
    ("boxed-escaped-brace", boxed("\\{1,2\\}"), "\\{1,2\\}", True),
    ("boxed-unclosed-last", "</think>\\boxed{6} and then \\boxed{7", "6", True),
    ("no-boxed", "</think>The answer is 42.", "42", False),
    # thinking region and decoys
    ("decoy-in-thinking", "Maybe \\boxed{5}? No.\n</think>\n\\boxed{6}", "6", True),
    ("decoy-right-in-thinking", "I think \\boxed{5}.\n</think>\nFinal: \\boxed{6}", "5", False),
    ("decoy-only-in-thinking", "It is \\boxed{5}.\n</think>\nI am not sure.", "5", False),
    ("two-think-blocks", "a</think>\\boxed{1} hmm <think>b</think>\\boxed{2}", "2", True),
]

MATH_SPECIAL = [
    # (id, completion, gold, finish, think, correct, status)
    ("truncated-in-thinking", "Let me think... \\boxed{6} maybe, continuing", "6", "length", True, False, "truncated"),
    ("truncated-after-think-with-answer", "ok</think>\\boxed{6} and more", "6", "length", True, True, "ok"),
    ("truncated-after-think-no-answer", "ok</think>The answer is", "6", "length", True, False, "truncated"),
    ("think-off-whole-text", "We compute \\boxed{6}.", "6", "stop", False, True, "ok"),
    ("think-off-cut-with-answer", "We compute \\boxed{6} and so", "6", "length", False, True, "ok"),
    ("think-on-no-close-stopped", "The template had no thinking. \\boxed{6}", "6", "stop", True, True, "ok"),
]

GSM8K = [
    ("gsm-plain-number", "</think>She makes 18 dollars a day.", "18", True),
    ("gsm-boxed", "</think>\\boxed{18}", "18", True),
    ("gsm-dollar-comma", "</think>The total is $1,250.", "1250", True),
    ("gsm-decimal-equal", "</think>Answer: 18.0", "18", True),
    ("gsm-last-number-wins", "</think>16 - 3 - 4 = 9 eggs, 9 * 2 = 18", "18", True),
    ("gsm-wrong", "</think>The answer is 17", "18", False),
    ("gsm-boxed-with-unit", "</think>\\boxed{18 \\text{ dollars}}", "18", True),
    ("gsm-no-number", "</think>I cannot tell.", "18", False),
]

# GPQA golds are letters (after the seeded option shuffle)
GPQA = [
    ("gpqa-answer-line", "</think>The mass is conserved.\nAnswer: B", "B", True),
    ("gpqa-answer-bold", "</think>**Answer: C**", "C", True),
    ("gpqa-lowercase", "</think>answer: d", "D", True),
    ("gpqa-wrong", "</think>Answer: A", "B", False),
    ("gpqa-last-wins", "</think>Answer: A ... wait. Answer: B", "B", True),
    ("gpqa-boxed-letter", "</think>\\boxed{B}", "B", True),
    ("gpqa-boxed-paren", "</think>\\boxed{\\text{(C)}}", "C", True),
    ("gpqa-decoy-in-thinking", "Answer: B?\n</think>Answer: A", "B", False),
]

TRIVIA = [
    ("trivia-boxed-alias", "</think>\\boxed{Scorpio}", ["Scorpio", "Skorpio"], True),
    ("trivia-article-case", "</think>The answer is the Beatles.", ["The Beatles", "Beatles"], True),
    ("trivia-short-line", "</think>\nSunset Blvd.", ["Sunset Boulevard", "Sunset Blvd"], True),
    ("trivia-punctuation", "</think>Answer: David Seville!", ["David Seville"], True),
    ("trivia-wrong", "</think>\\boxed{Leo}", ["Scorpio", "Skorpio"], False),
    ("trivia-partial-not-enough", "</think>\\boxed{Sunset}", ["Sunset Boulevard"], False),
    ("trivia-text-macro", "</think>\\boxed{\\text{Paris}}", ["Paris"], True),
]

EXACT = [
    ("exact-boxed", "</think>\\boxed{abc}", "abc", True),
    ("exact-region", "</think>  hello   world ", "hello world", True),
    ("exact-wrong", "</think>\\boxed{abd}", "abc", False),
]


def cases() -> list[tuple[str, str, str, str, str, bool, bool, str | None]]:
    """(id, grader, completion, gold, finish, think, correct, status or None = don't care)."""
    out = []
    for cid, comp, gold, ok in MATH:
        out.append((cid, "math", comp, gold, "stop", True, ok, None))
    for cid, comp, gold, finish, think, ok, status in MATH_SPECIAL:
        out.append((cid, "math", comp, gold, finish, think, ok, status))
    for cid, comp, gold, ok in GSM8K:
        out.append((cid, "gsm8k", comp, gold, "stop", True, ok, None))
    for cid, comp, gold, ok in GPQA:
        out.append((cid, "gpqa", comp, gold, "stop", True, ok, None))
    for cid, comp, aliases, ok in TRIVIA:
        out.append((cid, "triviaqa", comp, json.dumps(aliases), "stop", True, ok, None))
    for cid, comp, gold, ok in EXACT:
        out.append((cid, "exact", comp, gold, "stop", True, ok, None))
    return out
