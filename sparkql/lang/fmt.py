"""Canonical formatting: AST -> text (`sparkql fmt`).

One statement per line, single spaces, `name = value` options joined by
`, `, set expressions parenthesised only where precedence needs it. Comments
on their own lines and at line ends are kept (they are not in the AST, so
they are carried over from the source by line).
"""

from __future__ import annotations

from sparkql.lang import ast as A
from sparkql.lang import setexpr
from sparkql.lang.parser import parse

_PRECEDENCE = {"union": 1, "intersect": 2, "minus": 3}
_OP_SYMBOL = {"union": "|", "intersect": "&", "minus": "-"}


def _string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def fmt_value(v) -> str:
    if isinstance(v, A.Number):
        return v.text
    if isinstance(v, A.String):
        return _string(v.value)
    if isinstance(v, A.Word):
        return v.value
    if isinstance(v, A.ListValue):
        return "[" + ", ".join(fmt_value(i) for i in v.items) + "]"
    raise TypeError(v)  # pragma: no cover


def fmt_options(opts: list[A.Option]) -> str:
    return ", ".join(f"{o.key.name} = {fmt_value(o.value)}" for o in opts)


def fmt_selector(s: A.Selector | None) -> str:
    if s is None:
        return ""
    if s.kind == "all":
        return "[*]"
    if s.kind == "index":
        return f"[{s.index}]"
    if s.kind == "step":
        return f"[step={s.step}]"
    return f"[{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}]"


def fmt_model(m: A.ModelSel) -> str:
    return m.name.name + fmt_selector(m.selector)


def fmt_head(h: A.HeadLit) -> str:
    return f"L{h.layer}H{h.head}"


def fmt_set_expr(e) -> str:
    """An expression with parentheses only where precedence needs them. Chains of one operator
    print flat (``a | (b | c)`` is ``a | b | c``), a difference on the right keeps its own:
    ``a - (b - c)``. Folded without recursion (sparkql.lang.setexpr)."""

    def leaf(x) -> tuple[str, str | None]:
        if isinstance(x, A.SetName):
            return x.ref.name.name + fmt_selector(x.ref.selector), None
        return "{" + ", ".join(fmt_head(h) for h in x.heads) + "}", None

    def group(node, parts: list[tuple[str, str | None]]) -> tuple[str, str | None]:
        prec = _PRECEDENCE[node.op]
        shown = [f"({text})" if op is not None and (_PRECEDENCE[op] < prec or op == node.op) else text
                 for text, op in parts]
        return f" {_OP_SYMBOL[node.op]} ".join(shown), node.op

    return setexpr.fold(e, leaf, group)[0]


def _with(opts: list[A.Option]) -> str:
    return f" with {fmt_options(opts)}" if opts else ""


def fmt_statement(s) -> str:
    if isinstance(s, A.ModelStmt):
        return f"model {s.name.name} = {_string(s.path.value)}{_with(s.options)}"
    if isinstance(s, A.DatasetStmt):
        roles = ""
        if s.roles:
            roles = " (" + ", ".join(f"{r.role.name} = {_string(r.field.value)}" for r in s.roles) + ")"
        return f"dataset {s.name.name} = {_string(s.path.value)}{roles}{_with(s.options)}"
    if isinstance(s, A.SetStmt):
        return f"set {s.key.name} = {fmt_value(s.value)}"
    if isinstance(s, A.CircuitStmt):
        out = f"circuit {s.dataset.name} on {fmt_model(s.model)}"
        if s.diff:
            out += f" diff {fmt_model(s.diff)}"
        if s.using:
            out += f" using {s.using.method.name}"
            if s.using.args:
                out += f"({fmt_options(s.using.args)})"
        if s.alias:
            out += f" as {s.alias.name}"
        return out + _with(s.options)
    if isinstance(s, A.CohortStmt):
        return f"cohort {s.set.name}{_with(s.options)}"
    if isinstance(s, (A.AblateStmt, A.ScaleStmt)):
        verb = "ablate" if isinstance(s, A.AblateStmt) else "scale"
        src = s.source
        if src.random and src.set is None:
            what = f"random {src.count}"
        elif src.set is not None:
            what = src.set.name.name + fmt_selector(src.set.selector) + (f" top {src.top}" if src.top is not None else "")
            what = ("random matching " if src.random else "") + what
        else:
            what = "heads " + ", ".join(fmt_head(h) for h in src.heads)
        out = f"{verb} {what}"
        if isinstance(s, A.ScaleStmt):
            out += f" by {s.factor.text}"
        if s.target:
            out += f" on {fmt_model(s.target)}"
        if s.alias:
            out += f" as {s.alias.name}"
        return out + _with(s.options)
    if isinstance(s, A.HeadsStmt):
        return f"heads {s.name.name} = {fmt_set_expr(s.expr)}"
    if isinstance(s, A.EvalStmt):
        out = "eval"
        if s.metric:
            out += f" {s.metric.name}"
        if s.datasets:
            out += " on " + ", ".join(d.name for d in s.datasets)
        if s.targets:
            out += " for " + ", ".join(fmt_model(t) for t in s.targets)
        return out + _with(s.options)
    if isinstance(s, A.ThinkStmt):
        return f"think {s.mode.name}"
    raise TypeError(s)  # pragma: no cover


def _line_comments(text: str) -> dict[int, str]:
    """Comments by 1-based line, found outside strings."""
    out = {}
    for no, line in enumerate(text.splitlines(), 1):
        in_str, esc = False, False
        for i, ch in enumerate(line):
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = not in_str
            elif ch == "#" and not in_str:
                out[no] = line[i:].rstrip()
                break
    return out


def format_study(text: str, file: str | None = None) -> str:
    """The canonical form of a study, keeping its comments and blank-line grouping."""
    tree = parse(text, file)
    comments = _line_comments(text)
    lines_out: list[str] = []
    used: set[int] = set()
    prev_end = 0
    for stmt in tree.statements:
        start, end = stmt.span.line, stmt.span.end_line
        # Comment-only lines and blank lines between the previous statement and this one.
        for no in range(prev_end + 1, start):
            if no in comments and no not in used:
                lines_out.append(comments[no])
                used.add(no)
            elif no not in comments and (not lines_out or lines_out[-1] != ""):
                lines_out.append("")
        same_line = [comments[n] for n in range(start, end + 1) if n in comments and n not in used]
        used.update(n for n in range(start, end + 1) if n in comments)
        line = fmt_statement(stmt)
        lines_out.append(line + ("  " + "  ".join(same_line) if same_line else ""))
        prev_end = end
    total = text.count("\n") + 1
    for no in range(prev_end + 1, total + 1):
        if no in comments and no not in used:
            lines_out.append(comments[no])
    while lines_out and lines_out[0] == "":
        lines_out.pop(0)
    while lines_out and lines_out[-1] == "":
        lines_out.pop()
    return "\n".join(lines_out) + "\n"
