"""Text -> AST: Lark (LALR, positions on every node) and a transformer into sparkql.lang.ast.

Lark's errors become SparkErrors with the offending token's span and a hint
in the language's own words ("expected a statement keyword: model, dataset,
..."), never Lark's terminal names.
"""

from __future__ import annotations

import functools
import math
from importlib import resources

from lark import Lark, Token, v_args
from lark.visitors import Transformer_NonRecursive
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from sparkql.errors import Span, SparkError, SparkErrors
from sparkql.lang import ast as A

KEYWORDS = ["model", "dataset", "set", "circuit", "cohort", "ablate", "scale", "heads", "eval", "think"]

# Lark terminal name -> how a user would call it.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "STRING": 'a "string"',
    "INT": "a whole number",
    "SIGNED_INT": "a whole number",
    "SIGNED_NUMBER": "a number",
    "HEAD": "a head like L5H1",
    "METRIC": "a metric like pass@k",
    "_EQ": "'='",
    "_COMMA": "','",
    "_LPAR": "'('",
    "_RPAR": "')'",
    "_LSQB": "'['",
    "_RSQB": "']'",
    "_LBRACE": "'{'",
    "_RBRACE": "'}'",
    "_PIPE": "'|'",
    "_AMP": "'&'",
    "_MINUS": "'-'",
    "_STAR": "'*'",
    "_COLON": "':'",
    "SEMICOLON": "';'",
    "_NL": "end of line",
    "$END": "end of file",
}


@functools.lru_cache(maxsize=1)
def grammar_text() -> str:
    return resources.files("sparkql.grammar").joinpath("spark.lark").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def lark_parser() -> Lark:
    # cache=True stores the compiled LALR tables in the temp dir (keyed by grammar hash):
    # it keeps `sparkql check` well under its start-time budget.
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True, cache=True)


def span_of(meta_or_token) -> Span:
    m = meta_or_token
    return Span(
        line=m.line, column=m.column, end_line=m.end_line, end_column=m.end_column,
        start_pos=m.start_pos, end_pos=m.end_pos,
    )


def _unquote(s: str) -> str:
    body = s[1:-1]
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(escapes.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _ident(tok: Token) -> A.Ident:
    return A.Ident(name=str(tok), span=span_of(tok))


MAX_INT = 2**63 - 1
"""Largest whole number a value may be written as (DuckDB's BIGINT); options bound it further."""
MAX_INDEX = 2**31 - 1
"""Largest layer, head, step, index or `top K` (they are stored as INTEGER)."""


def _int(tok: Token, limit: int = MAX_INDEX, text: str | None = None) -> int:
    text = str(tok) if text is None else text
    # Python refuses to convert more than 4300 digits at all: compare lengths first.
    if len(text.lstrip("+-").lstrip("0")) > len(str(limit)) or abs(int(text)) > limit:
        raise SparkError(f"the number {_short(text)} is too large (at most {limit})", span=span_of(tok))
    return int(text)


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:10]}...{text[-6:]} ({len(text)} digits)"


def _head(tok: Token) -> A.HeadLit:
    layer, head = str(tok)[1:].split("H")
    return A.HeadLit(layer=_int(tok, text=layer), head=_int(tok, text=head), span=span_of(tok))


def _num(tok: Token) -> A.Number:
    text = str(tok)
    is_int = all(ch.isdigit() or ch in "+-" for ch in text)
    if is_int:
        value: int | float = _int(tok, MAX_INT)
    else:
        value = float(text)
        if math.isinf(value):
            raise SparkError(f"the number {_short(text)} is too large (at most about 1.8e308)", span=span_of(tok),
                             hint="numbers must be finite")
    return A.Number(value=value, text=text.lstrip("+"), span=span_of(tok))


def _clauses(clauses: list) -> dict:
    """Optional clauses written in any order, each at most once."""
    out = {}
    for kind, node, span in clauses:
        if kind in out:
            raise SparkError(f"`{kind}` is given twice in one statement", span=span, hint="keep one")
        out[kind] = node
    return out


@v_args(meta=True)
class _Builder(Transformer_NonRecursive):
    """Parse tree -> AST. Every node gets the span of the text it came from. Non-recursive: a
    chain of hundreds of set operations is a parse tree hundreds deep."""

    def start(self, meta, items):
        stmts = [s for s in items if s is not None]
        return A.StudyAst(statements=stmts, span=span_of(meta) if not meta.empty else None)

    # values
    def number(self, meta, items):
        return _num(items[0])

    def string(self, meta, items):
        return A.String(value=_unquote(str(items[0])), span=span_of(items[0]))

    def ident(self, meta, items):
        return A.Word(value=str(items[0]), span=span_of(items[0]))

    def list(self, meta, items):
        return A.ListValue(items=[v for v in items if v is not None], span=span_of(meta))

    def option(self, meta, items):
        key, value = items
        return A.Option(key=_ident(key), value=value, span=span_of(meta))

    def with_clause(self, meta, items):
        return list(items)

    # selectors
    def sel_all(self, meta, items):
        return A.Selector(kind="all", span=span_of(meta))

    def sel_index(self, meta, items):
        return A.Selector(kind="index", index=_int(items[0]), span=span_of(meta))

    def sel_slice(self, meta, items):
        start, stop = items
        return A.Selector(
            kind="slice", start=None if start is None else _int(start), stop=None if stop is None else _int(stop),
            span=span_of(meta),
        )

    def sel_step(self, meta, items):
        return A.Selector(kind="step", step=_int(items[0]), span=span_of(meta))

    def model_sel(self, meta, items):
        name, sel = items
        return A.ModelSel(name=_ident(name), selector=sel, span=span_of(meta))

    def set_ref(self, meta, items):
        name, sel = items
        return A.SetRef(name=_ident(name), selector=sel, span=span_of(meta))

    # statements
    def model_stmt(self, meta, items):
        name, path, opts = items
        return A.ModelStmt(name=_ident(name), path=self.string(meta, [path]), options=opts or [], span=span_of(meta))

    def role_binding(self, meta, items):
        role, field = items
        return A.RoleBinding(role=_ident(role), field=self.string(meta, [field]), span=span_of(meta))

    def role_list(self, meta, items):
        return [r for r in items if r is not None]

    def dataset_stmt(self, meta, items):
        name, path, roles, opts = items
        return A.DatasetStmt(
            name=_ident(name), path=self.string(meta, [path]), roles=roles or [], options=opts or [], span=span_of(meta)
        )

    def set_stmt(self, meta, items):
        key, value = items
        return A.SetStmt(key=_ident(key), value=value, span=span_of(meta))

    def diff_clause(self, meta, items):
        return ("diff", items[0], span_of(meta))

    def using_clause(self, meta, items):
        method, *args = items
        using = A.Using(method=_ident(method), args=[a for a in args if a is not None], span=span_of(meta))
        return ("using", using, span_of(meta))

    def as_clause(self, meta, items):
        return ("as", _ident(items[0]), span_of(meta))

    def circuit_stmt(self, meta, items):
        dataset, model, *clauses, opts = items
        c = _clauses(clauses)
        diff, using, alias = c.get("diff"), c.get("using"), c.get("as")
        return A.CircuitStmt(
            dataset=_ident(dataset), model=model, diff=diff, using=using, alias=alias, options=opts or [],
            span=span_of(meta),
        )

    def cohort_stmt(self, meta, items):
        name, opts = items
        return A.CohortStmt(set=_ident(name), options=opts or [], span=span_of(meta))

    def top_clause(self, meta, items):
        return _int(items[0])

    def on_clause(self, meta, items):
        return ("on", items[0], span_of(meta))

    def head_list(self, meta, items):
        return [_head(t) for t in items]

    def set_source(self, meta, items):
        ref, top = items
        return A.HeadSource(set=ref, top=top, span=span_of(meta))

    def literal_source(self, meta, items):
        return A.HeadSource(heads=items[0], span=span_of(meta))

    def random_source(self, meta, items):
        return A.HeadSource(random=True, count=_int(items[0]), span=span_of(meta))

    def matching_source(self, meta, items):
        ref, top = items
        return A.HeadSource(random=True, set=ref, top=top, span=span_of(meta))

    def ablate_stmt(self, meta, items):
        source, *clauses, opts = items
        c = _clauses(clauses)
        target, alias = c.get("on"), c.get("as")
        return A.AblateStmt(source=source, target=target, alias=alias, options=opts or [], span=span_of(meta))

    def scale_stmt(self, meta, items):
        source, factor, *clauses, opts = items
        c = _clauses(clauses)
        target, alias = c.get("on"), c.get("as")
        return A.ScaleStmt(
            source=source, factor=factor, target=target, alias=alias, options=opts or [], span=span_of(meta)
        )

    def heads_stmt(self, meta, items):
        name, expr = items
        return A.HeadsStmt(name=_ident(name), expr=expr, span=span_of(meta))

    def set_name(self, meta, items):
        return A.SetName(ref=items[0], span=span_of(meta))

    def set_literal(self, meta, items):
        return A.SetLiteral(heads=items[0] or [], span=span_of(meta))

    def _op(self, op, meta, items):
        left, right = items
        return A.SetOp(op=op, left=left, right=right, span=span_of(meta))

    def union(self, meta, items):
        return self._op("union", meta, items)

    def intersect(self, meta, items):
        return self._op("intersect", meta, items)

    def minus(self, meta, items):
        return self._op("minus", meta, items)

    def eval_on(self, meta, items):
        return [_ident(t) for t in items]

    def eval_for(self, meta, items):
        return list(items)

    def eval_stmt(self, meta, items):
        metric, on, for_, opts = items
        return A.EvalStmt(
            metric=_ident(metric) if metric is not None else None, datasets=on or [], targets=for_ or [],
            options=opts or [], span=span_of(meta),
        )

    def think_stmt(self, meta, items):
        return A.ThinkStmt(mode=_ident(items[0]), span=span_of(meta))


def _expected_words(expected: set[str]) -> str:
    words = []
    keywords = sorted(e.strip('"').lower() for e in expected if e.isupper() and e not in _TERMINAL_WORDS and not e.startswith("_") and e not in ("WS", "COMMENT"))
    for e in sorted(expected):
        if e in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[e])
    words = sorted(set(words))
    kw = [k for k in keywords if k]
    parts = []
    if kw:
        parts.append("keyword " + ", ".join(f"'{k}'" for k in kw))
    parts.extend(words)
    return ", ".join(parts[:8])


def _lark_error(e: UnexpectedInput, text: str) -> SparkError:
    line, col = e.line, e.column
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        span = Span(line=line, column=col, end_line=line, end_column=col + 1, start_pos=e.pos_in_stream, end_pos=e.pos_in_stream + 1)
        if ch == '"':
            return SparkError("unterminated string", span=span, hint='close the string with " on the same line')
        hint = None
        if ch == "@":
            hint = "the metric is written pass@k"
        return SparkError(f"unexpected character {ch!r}", span=span, hint=hint)
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            n_lines, last = len(lines), lines[-1]
            span = Span(line=n_lines, column=len(last) + 1, end_line=n_lines, end_column=len(last) + 2,
                        start_pos=len(text), end_pos=len(text))
            return SparkError("unexpected end of study", span=span, hint="expected " + _expected_words(e.expected))
        span = span_of(tok)
        if span.end_line != span.line:  # newline tokens: point at the line end
            span = Span(line=span.line, column=span.column, end_line=span.line, end_column=span.column + 1,
                        start_pos=span.start_pos, end_pos=span.start_pos + 1)
        shown = "end of line" if tok.type == "_NL" else repr(str(tok))
        expected = e.expected
        hint = "expected " + _expected_words(expected)
        if "METRIC" in expected and text[tok.end_pos:tok.end_pos + 1] == "@":
            hint = "the metric is written pass@k"
        if tok.type == "NAME" and e.state is not None and any(k.upper() in expected for k in KEYWORDS) and str(tok) not in KEYWORDS:
            from sparkql.errors import did_you_mean

            guess = did_you_mean(str(tok), KEYWORDS)
            hint = f"a statement starts with one of: {', '.join(KEYWORDS)}" + (f"; {guess}" if guess else "")
        return SparkError(f"unexpected {shown}", span=span, hint=hint)
    if isinstance(e, UnexpectedEOF):
        return SparkError("unexpected end of study", hint="expected " + _expected_words(set(e.expected)))
    return SparkError(str(e))  # pragma: no cover


MAX_ERRORS = 50
"""Syntax errors reported for one file at most."""

_CONTINUES = (",", "(", "[", "{", "=", "|", "&", "-")


def _parse_once(text: str) -> A.StudyAst:
    try:
        return _Builder().transform(lark_parser().parse(text))
    except UnexpectedInput as e:
        raise _lark_error(e, text) from None
    except VisitError as e:  # an error raised while building the AST: unwrap it
        if isinstance(e.orig_exc, SparkError):
            raise e.orig_exc from None
        raise


def _starts_statement(line: str) -> bool:
    word = line.lstrip().split(" ", 1)[0].split("\t", 1)[0]
    return word in KEYWORDS


def _statement_lines(lines: list[str], line: int) -> tuple[int, int]:
    """0-based [first, end) lines of the statement around 1-based ``line``: from the last line at or
    before it that starts with a keyword (and does not continue the line above) to the next such line."""
    i = min(max(line - 1, 0), len(lines) - 1)
    first = i
    for j in range(i, -1, -1):
        above = lines[j - 1].split("#", 1)[0].rstrip() if j > 0 else ""
        if _starts_statement(lines[j]) and not above.endswith(_CONTINUES):
            first = j
            break
    end = len(lines)
    for j in range(i + 1, len(lines)):
        if _starts_statement(lines[j]):
            end = j
            break
    return first, end


def parse(text: str, file: str | None = None) -> A.StudyAst:
    """Parse study text into an AST; SparkError (with file, span and source) on any mistake.

    After a syntax error the statement holding it is blanked out (same length, so every later
    position is unchanged) and the text is parsed again, so one check reports every independent
    syntax error (a :class:`~sparkql.errors.SparkErrors` when there are several), each with its caret.
    A UTF-8 byte order mark at the start is ignored."""
    if text.startswith("\ufeff"):
        text = text[1:]
    errors: list[SparkError] = []
    work = text
    blanked: set[int] = set()  # 0-based lines blanked so far
    while len(errors) < MAX_ERRORS:
        try:
            tree = _parse_once(work)
            break
        except SparkError as e:
            lines = work.splitlines(keepends=True)
            line = e.span.line if e.span else len(lines)
            if not lines or (errors and line - 1 in blanked):
                break  # an error the blanking itself made
            errors.append(e)
            first, end = _statement_lines(lines, line)
            new = [k for k in range(first, end) if k not in blanked and lines[k].strip()]
            if not new:
                break
            for k in new:
                body = lines[k].rstrip("\r\n")
                lines[k] = " " * len(body) + lines[k][len(body):]
            blanked.update(range(first, end))
            work = "".join(lines)
    if errors:
        errors.sort(key=lambda e: (e.span.start_pos if e.span else len(text)))
        raise SparkErrors.of([e.with_source(file, text) for e in errors]).with_source(file, text) from None
    return tree
