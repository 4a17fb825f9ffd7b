"""Walking and folding set-algebra expressions (`heads NAME = a | b & {L1H2} - c`) without recursion.

A generated study may chain hundreds of terms (`a | b | c | ...`) or nest parentheses hundreds
deep; Python's recursion limit must not be the language's limit, so every walk here keeps its
own stack. :func:`operands` folds a chain of one operator into one n-ary group (``a | b | c`` is
one union of three, as is ``a | (b | c)``; ``a - b - c`` is one difference, but ``a - (b - c)``
is not), which is also the shape the compiler gives the plan (``HeadExpr`` with ``args``).

What cannot be folded (operators alternating through parentheses) still nests in the plan, and a
plan is serialised (step keys, ``sparkql plan --json``) by libraries with depth limits of their
own, so the resolver refuses groups nested deeper than :data:`MAX_DEPTH`; naming a part with
``heads PART = ...`` resets the depth.
"""

from __future__ import annotations

from typing import Callable, Iterator, TypeVar

from sparkql.lang import ast as A

MAX_DEPTH = 64
"""Most operator groups nested inside one another in one `heads` expression (after folding chains)."""

T = TypeVar("T")


def operands(e: A.SetOp) -> list:
    """The operands of the n-ary group rooted at ``e``: same-operator children are merged, except
    the right operand of a difference (``a - (b - c)`` keeps its inner group)."""
    out = []
    stack: list[tuple[object, bool]] = [(e, True)]
    while stack:
        x, merge = stack.pop()
        if merge and isinstance(x, A.SetOp) and x.op == e.op:
            stack.append((x.right, x.op != "minus"))
            stack.append((x.left, True))
        else:
            out.append(x)
    return out


def fold(e, leaf: Callable[[object], T], group: Callable[[A.SetOp, list[T]], T]) -> T:
    """Bottom-up value of expression ``e``: ``leaf(node)`` for names and literal sets,
    ``group(op_node, [operand values])`` for each n-ary group (see :func:`operands`)."""
    values: list = []
    stack: list[tuple[object, list | None]] = [(e, None)]
    while stack:
        node, ops = stack.pop()
        if not isinstance(node, A.SetOp):
            values.append(leaf(node))
        elif ops is None:
            ops = operands(node)
            stack.append((node, ops))
            stack.extend((o, None) for o in reversed(ops))
        else:
            args = values[len(values) - len(ops):]
            del values[len(values) - len(ops):]
            values.append(group(node, args))
    (result,) = values
    return result


def leaves(e) -> Iterator:
    """Names and literal sets of ``e``, left to right."""
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, A.SetOp):
            stack.append(x.right)
            stack.append(x.left)
        else:
            yield x


def depth(e) -> int:
    """Operator groups nested in ``e`` after folding chains (0 for a bare name or literal)."""
    return fold(e, lambda _: 0, lambda _, ds: 1 + max(ds))
