"""Answer extraction: the part of a completion's answer region that is compared with the gold.

Torch-free and sympy-free: it runs in the grading process for every sample, so every function
here is linear in the text (regular expressions without nested unbounded repeats, one pass for
brace matching). ``benchmarks/grading.py`` times them on adversarial texts.

Two rules for math answers (:data:`EXTRACT_RULES`):

* ``strict``: the last ``\\boxed{}`` of the answer region, nothing else. The paper's
  Light-R1-based evaluation graded this way.
* ``lenient``: the order lighteval and open-r1 use with Math-Verify: the boxed answer first
  (several boxes joined only by commas, ``and``/``or`` are read as one list, as Math-Verify
  does), then ``final answer is X``, then ``Answer: X`` / ``answer ... X`` forms, then the last
  LaTeX span (``$...$``, ``\\(...\\)``, ``\\[...\\]``) or plain number or expression.

The other graders have one rule each (already as lenient as their references): see
docs/evaluation.md.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

EXTRACT_RULES = ("strict", "lenient")
LETTERS = "ABCDEFGHIJ"
MINUS_SIGNS = str.maketrans({"\u2212": "-", "\u2013": "-", "\ufe63": "-", "\uff0d": "-"})
"""Unicode minus signs a model writes for ``-`` (U+2212 MINUS SIGN above all)."""

# --------------------------------------------------------------------------- boxes

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(\s*)")
# Only these tokens matter for brace matching: an escaped brace or backslash never opens or
# closes a group; everything else between braces is skipped by the regex engine (C speed).
_BRACE_TOKENS = re.compile(r"\\[{}\\]|[{}]")


@dataclass(frozen=True)
class Box:
    start: int
    """Offset of the ``\\boxed`` command."""
    end: int
    """Offset just after the closing brace (or the braceless token)."""
    content: str


def boxes(text: str) -> list[Box]:
    """Every complete ``\\boxed{...}``/``\\fbox{...}`` in ``text`` (braces matched), and
    ``\\boxed 5`` (no braces: the next token), in order of their start. Unclosed boxes (a
    completion cut mid-answer) are left out. One pass over the text: a stack of open groups,
    so thousands of unclosed boxes cost no more than one (the old rescan per box was quadratic)."""
    found = list(_BOX_RE.finditer(text))
    if not found:
        return []
    openers: dict[int, int] = {}  # offset of a box's "{" -> offset of its \boxed
    out: list[Box] = []
    for m in found:
        i = m.end()
        if i < len(text) and text[i] == "{":
            openers[i] = m.start()
        elif m.group(1):  # "\boxed 9." : the next token, when there is whitespace before it
            tok = re.match(r"[^\s$]+", text[i:i + 200])
            if tok:
                out.append(Box(m.start(), i + tok.end(), tok.group(0).rstrip(".,")))
    stack: list[int] = []
    for t in _BRACE_TOKENS.finditer(text, min(openers) if openers else len(text)):
        c = t.group(0)
        if c == "{":
            stack.append(t.start())
        elif c == "}" and stack:
            opened = stack.pop()
            start = openers.get(opened)
            if start is not None:
                out.append(Box(start, t.end(), text[opened + 1:t.start()].strip()))
    out.sort(key=lambda b: b.start)
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``); an unclosed last box
    (cut mid-answer) falls back to the one before it; None when there is none."""
    found = boxes(text)
    return found[-1].content if found else None


# What may stand between two boxes of one list: a comma, "and"/"or" (a comma glued before them
# allowed, as Math-Verify's joiner has it: ", and" with a space ends the list), a semicolon,
# \quad or a LaTeX line break, with spaces and $ delimiters around. Prose between two boxes
# ("\boxed{12}, but rechecking, \boxed{14}") ends the list: those are two answers, the last wins.
_BOX_JOINER = re.compile(r"\s*\$*\s*(?:,?(?:and|or)\b|,|;|\\q?quad\b|\\\\)\s*\$*\s*")


def boxed_list(text: str, limit: int = 6) -> str | None:
    """The boxed answer under the lenient rule: the last box, joined with the boxes just before
    it when only a list separator stands between them (:data:`_BOX_JOINER`: ``\\boxed{1},
    \\boxed{2}`` and ``$\\boxed{1}$ and $\\boxed{2}$`` read as the list ``1, 2``), at most
    ``limit`` boxes. Math-Verify reads such a run as one set, which matches a gold set or list
    and misses a single gold value; so do we."""
    found = boxes(text)
    if not found:
        return None
    run = [found[-1]]
    for b in reversed(found[:-1]):
        if len(run) >= limit or b.end > run[0].start:
            break  # a box inside another box is not a list item
        if not _BOX_JOINER.fullmatch(text, b.end, run[0].start):
            break
        run.insert(0, b)
    return ", ".join(b.content for b in run)


# --------------------------------------------------------------------------- numbers

# A number as written in prose: 1,234,567.5  1 234  -3  .5  2,74 (decimal comma)
_NUMBER_RE = re.compile(r"(?<![\w.])-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])|(?<![\w.\d])-?\.\d+")


def last_number(text: str) -> str | None:
    """The last number of ``text`` (``$1,250.`` -> ``1250``), or None."""
    last = None
    for last in _NUMBER_RE.finditer(text):
        pass
    if last is None:
        return None
    return last.group(0).replace("$", "").replace(",", "")


_GSM_MARK_RE = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


def gsm8k_marker(text: str) -> str | None:
    """The number after the last ``#### `` (GSM8K's answer marker), or None."""
    last = None
    for last in _GSM_MARK_RE.finditer(text):
        pass
    return last.group(1).replace(",", "") if last else None


_INT_RE = re.compile(r"[+-]?\d+")


def normalize_math(s: str) -> str:
    """Light, meaning-preserving cleanup used for the fast paths (not for math-verify's input)."""
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\(?:text|textbf|mathrm)\{\s*\}", "", s)
    s = s.replace("\\!", "").replace("\\,", "").replace("\\ ", "").replace("\\left", "").replace("\\right", "")
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    return s


def integer_key(s: str) -> str | None:
    """A canonical text of ``s`` when it is an integer (``"070"`` -> ``"70"``, ``"1,000"`` ->
    ``"1000"``, ``"-0"`` -> ``"0"``), else None. Text, not ``int``: Python refuses to convert
    strings of more than 4,300 digits, and a model looping on digits writes exactly that."""
    t = normalize_math(s.translate(MINUS_SIGNS))
    m = re.fullmatch(r"\\text\{(.*)\}", t)
    if m:
        t = m.group(1)
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", t):
        t = t.replace(",", "")
    if not _INT_RE.fullmatch(t):
        return None
    sign = "-" if t[0] == "-" else ""
    digits = t.lstrip("+-").lstrip("0") or "0"
    return ("" if digits == "0" else sign) + digits


# --------------------------------------------------------------------------- lenient math

@dataclass(frozen=True)
class Span:
    """A LaTeX math span: ``$$..$$``, ``\\[..\\]`` (may span lines), ``$..$``, ``\\(..\\)`` (one line)."""
    start: int
    end: int
    content: str


_DELIMS = re.compile(r"\\\[|\\\]|\\\(|\\\)|\\\$|\$\$|\$|\n")
_CLOSER = {"$$": "$$", "\\[": "\\]", "$": "$", "\\(": "\\)"}


def latex_spans(text: str) -> list[Span]:
    """The LaTeX spans of ``text``, left to right, in one pass over its delimiters (a regex per
    span type, as Math-Verify uses, rescans the text from every opener: quadratic on a text of
    unclosed ``\\[``). An inline span left open at the end of its line is dropped."""
    out: list[Span] = []
    opener: str | None = None
    begin = 0
    for m in _DELIMS.finditer(text):
        tok = m.group(0)
        if tok == "\\$":
            continue  # an escaped dollar is text
        if opener is None:
            if tok in _CLOSER and not (tok == "$" and m.start() > 0 and text[m.start() - 1].isdigit()):
                opener, begin = tok, m.end()
            continue
        if tok == "\n" and opener in ("$", "\\("):
            opener = None  # inline math does not cross a line
        elif tok == _CLOSER[opener]:
            content = text[begin:m.start()].strip()
            if content:
                out.append(Span(begin - len(opener), m.end(), content))
            opener = None
    return out


_SPAN_JOINER = re.compile(r"\s*(?:,?and|,?or|,)\s*")  # Math-Verify's: ", and" (with a space) ends a list
_PERCENT_RE = re.compile(r"\s*(?:\\?%|percent(?:age)?\b|pct\b)", re.I)
# A plain number as Math-Verify reads one (thousands separators with commas or spaces, decimal
# point or comma, a currency sign before it), an arithmetic expression that starts with a digit
# and has an operator (1/2, 3*4+1, 2^10), or a bare \frac{1}{2}. The repeats are bounded and
# cannot overlap much: linear in the text.
_PLAIN_RE = re.compile(
    r"(?:(?<=[\s=(*])|^)(?:[$€£¥] ?)?(?P<v>"
    r"-?\\[dt]?frac\{-?\d+(?:[.,]\d+)?\}\{-?\d+(?:[.,]\d+)?\}"
    r"|-?\(?-?\d[\d. ]{0,30}+[+\-*/^×÷][\d. +\-*/^×÷()]{0,60}[\d)]"
    r"|-?(?:[1-9]\d{0,2}(?:[ ,]\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?|\.\d+)"
    r")(?!\s*=)")
_FINAL_ANSWER_RE = re.compile(r"(?i:final answer)[^\n]{0,100}?\s(?i:is):?\s*")
_ANSWER_COLON_RE = re.compile(r"(?i:answer)\s*:")
_ANSWER_RE = re.compile(r"(?i:answer)")


@dataclass(frozen=True)
class _Value:
    start: int
    end: int
    text: str


def _with_percent(text: str, v: _Value) -> _Value:
    m = _PERCENT_RE.match(text, v.end)
    return _Value(v.start, m.end(), v.text + "\\%") if m else v


def _plain_value(m: re.Match) -> str:
    t = m.group("v").strip()
    if re.fullmatch(r"-?[1-9]\d{0,2}(?:[ ,]\d{3})+(?:\.\d+)?", t):
        t = t.replace(" ", "").replace(",", "")  # thousands separators
    elif re.fullmatch(r"-?\d+,\d+", t):
        t = t.replace(",", ".")  # a decimal comma (2,74)
    return t.replace("×", "\\times ").replace("÷", "\\div ")


def _span_run_forward(text: str, spans: list[Span], i: int, limit: int = 6) -> _Value:
    """Span ``i`` joined with the spans after it that only ``,``/``and``/``or`` separate."""
    run = [spans[i]]
    while len(run) < limit and i + 1 < len(spans) and _SPAN_JOINER.fullmatch(text, run[-1].end, spans[i + 1].start):
        i += 1
        run.append(spans[i])
    return _Value(run[0].start, run[-1].end, ", ".join(s.content for s in run))


def _span_run_backward(text: str, spans: list[Span], i: int, limit: int = 6) -> _Value:
    run = [spans[i]]
    while len(run) < limit and i > 0 and _SPAN_JOINER.fullmatch(text, spans[i - 1].end, run[0].start):
        i -= 1
        run.insert(0, spans[i])
    return _Value(run[0].start, run[-1].end, ", ".join(s.content for s in run))


class _Scan:
    """The LaTeX spans and plain values of one region, each found in one linear scan, then
    looked up by position (bisect) from every anchor."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.spans = latex_spans(text)
        self.span_starts = [s.start for s in self.spans]
        self._plains: list[re.Match] | None = None
        self._plain_starts: list[int] = []

    def outside(self, pos: int) -> bool:
        j = bisect.bisect_right(self.span_starts, pos) - 1
        return j < 0 or self.spans[j].end <= pos

    def plain(self, m: re.Match) -> _Value:
        return _with_percent(self.text, _Value(m.start(), m.end(), _plain_value(m)))

    @property
    def plains(self) -> list[re.Match]:
        """Every plain value outside LaTeX spans, in order (one scan, on first use)."""
        if self._plains is None:
            found: list[re.Match] = []
            j, spans = 0, self.spans  # matches come in order: walk the spans alongside
            for m in _PLAIN_RE.finditer(self.text):
                pos = m.start()
                while j < len(spans) and spans[j].end <= pos:
                    j += 1
                if j == len(spans) or spans[j].start > pos:
                    found.append(m)
            self._plains = found
            self._plain_starts = [m.start() for m in found]
        return self._plains

    def first_plain(self, a: int, window: int) -> re.Match | None:
        """The first plain value outside LaTeX spans starting within ``window`` after ``a``."""
        plains = self.plains
        i = bisect.bisect_left(self._plain_starts, a)
        return plains[i] if i < len(plains) and plains[i].start() <= a + window else None

    def after_anchor(self, a: int, window: int, exact: bool) -> _Value | None:
        """The value an anchor ending at ``a`` introduces: a span (run) starting within
        ``window`` characters (at ``a`` itself when ``exact``), or a plain number or
        expression: the one after the last ``=`` within 100 characters when there is one
        (``Answer: 3 + 4 = 7``), else the first within the window. The later-ending wins."""
        text, cands = self.text, []
        j = bisect.bisect_left(self.span_starts, a)
        if j < len(self.spans) and self.spans[j].start <= a + window:
            cands.append(_with_percent(text, _span_run_forward(text, self.spans, j)))
        m = None
        if not exact:
            eq = text.rfind("=", a, a + 100)
            if eq >= 0 and text.find("\n", a, eq) < 0:
                k = eq + 1
                while k < len(text) and text[k] in " \t":
                    k += 1
                m = _PLAIN_RE.match(text, k)
        if m is None:
            m = self.first_plain(a, window)
        if m is not None and self.outside(m.start()):
            cands.append(self.plain(m))
        return max(cands, key=lambda v: v.end) if cands else None


def lenient_math(region: str) -> str | None:
    """The lenient rule's answer (see the module doc): boxed, ``final answer is``, ``Answer:``,
    ``answer``, then the rightmost LaTeX span (run) or plain value."""
    boxed = boxed_list(region)
    if boxed is not None:
        return boxed
    scan = _Scan(region)
    for anchor, window, exact in ((_FINAL_ANSWER_RE, 0, True), (_ANSWER_COLON_RE, 50, False), (_ANSWER_RE, 50, False)):
        best: _Value | None = None
        for m in anchor.finditer(region):
            if scan.outside(m.start()):
                v = scan.after_anchor(m.end(), window, exact)
                if v is not None and (best is None or v.end >= best.end):
                    best = v
        if best is not None:
            return best.text
    cands: list[_Value] = []
    if scan.spans:
        cands.append(_with_percent(region, _span_run_backward(region, scan.spans, len(scan.spans) - 1)))
    if scan.plains:
        cands.append(scan.plain(scan.plains[-1]))
    return max(cands, key=lambda v: v.end).text if cands else None


def extract_math(region: str, rule: str = "strict") -> str | None:
    """The answer of a math completion's answer region under ``rule`` (see the module doc)."""
    if rule == "strict":
        return last_boxed(region)
    if rule == "lenient":
        return lenient_math(region)
    raise ValueError(f"unknown extraction rule {rule!r}")


# --------------------------------------------------------------------------- letters (GPQA)

# "Answer: B", "answer is (C)", "Answer: $B$", "**Answer:** **D**", "answer is option B".
# The word is matched in any case, the letter in upper case; a lower-case letter counts only
# at the end of its line ("answer: d"), so "This answer is a consequence" is not option A.
_LETTER_FORM = r"(?:option\s+|choice\s+)?[(\[*$]{0,3}\s*(?:\\text(?:bf)?\{\s*\(?)?"
_ANSWER_LETTER_RE = re.compile(
    rf"(?i:answer)(?:\s*\*\*)?\s*(?:(?i:is)\s*:?|:|：)(?:\s*\*\*)?\s*{_LETTER_FORM}"
    rf"(?:(?P<up>[A-J])(?![A-Za-z0-9])|(?P<low>[a-j])(?=[\s).*$\]}}]*(?:\.\s*)?$))",
    re.M)
_BARE_LETTER_RE = re.compile(r"[\s*_$(\[]*(?:\\text(?:bf)?\{\s*\(?)?\s*([A-J])\s*[)\].]?\}?[\s*_$).\]]*")


def extract_letter(text: str, n_options: int = 4) -> str | None:
    """An option letter: the last ``Answer: X`` (or a boxed letter, whichever comes last), else
    a last line that is only a letter (``B``, ``**B**``, ``(B)``, ``$B$``)."""
    valid = LETTERS[:n_options]
    best: tuple[int, str] | None = None
    for m in _ANSWER_LETTER_RE.finditer(text):
        letter = (m.group("up") or m.group("low")).upper()
        if letter in valid:
            best = (m.start(), letter)
    for b in boxes(text):
        m = _BARE_LETTER_RE.fullmatch(b.content)
        if m and m.group(1) in valid and (best is None or b.start > best[0]):
            best = (b.start, m.group(1))
    if best is not None:
        return best[1]
    tail = text.rstrip()[-200:]
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    if lines:
        m = _BARE_LETTER_RE.fullmatch(lines[-1])
        if m and m.group(1) in valid:
            return m.group(1)
    return None


# --------------------------------------------------------------------------- short answers (TriviaQA)

_ANSWER_PHRASE_RE = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*([^\n]+)", re.IGNORECASE)


def strip_text_macro(s: str) -> str:
    m = re.fullmatch(r"\s*\\(?:text|textbf|mathrm)\{(.*)\}\s*", s, flags=re.S)
    return m.group(1) if m else s


def extract_short_answer(text: str) -> str | None:
    """Free-text answers (TriviaQA): boxed, else ``answer: ...``/``the answer is ...`` (last),
    else the last non-empty line when it is short (<= 12 words)."""
    boxed = last_boxed(text)
    if boxed is not None:
        return strip_text_macro(boxed)
    last = None
    for last in _ANSWER_PHRASE_RE.finditer(text):
        pass
    if last is not None:
        return last.group(1).strip().strip("*").strip()
    tail = text.strip()[-400:]
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    if lines and len(lines[-1].split()) <= 12:
        return lines[-1]
    return None
