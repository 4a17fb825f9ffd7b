"""The abstract syntax tree of a .spark study: pydantic models, each with its source span.

Two trees are equal when they say the same thing: ``==`` ignores spans, so
``parse(fmt(x)) == parse(x)`` holds although formatting moves text around.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from sparkql.errors import Span


def _strip_spans(obj):
    if isinstance(obj, dict):
        return {k: _strip_spans(v) for k, v in obj.items() if k != "span"}
    if isinstance(obj, list):
        return [_strip_spans(v) for v in obj]
    return obj


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    span: Span | None = Field(default=None, repr=False)
    """Where the node is in the study text."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and _strip_spans(self.model_dump()) == _strip_spans(other.model_dump())  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(repr(_strip_spans(self.model_dump())))


class Ident(Node):
    name: str


# ---- values -------------------------------------------------------------------------

class Number(Node):
    kind: Literal["number"] = "number"
    value: float | int
    text: str
    """As written, so `fmt` keeps `1.30` and `32768` exactly."""


class String(Node):
    kind: Literal["string"] = "string"
    value: str


class Word(Node):
    """A bare word value: `fp64`, `kl`, `sample`, `on`, `true`."""

    kind: Literal["word"] = "word"
    value: str


class ListValue(Node):
    kind: Literal["list"] = "list"
    items: list["Value"]


Value = Annotated[Union[Number, String, Word, ListValue], Field(discriminator="kind")]
ListValue.model_rebuild()


class Option(Node):
    key: Ident
    value: Value


# ---- selectors and references ----------------------------------------------------------

class Selector(Node):
    """`[*]`, `[-1]`, `[i:j]`, `[step=N]`."""

    kind: Literal["all", "index", "slice", "step"]
    index: int | None = None
    start: int | None = None
    stop: int | None = None
    step: int | None = None


class ModelSel(Node):
    name: Ident
    selector: Selector | None = None


class SetRef(Node):
    """A head set by name, optionally one checkpoint's instance: `emergent_grpo[step=100]`."""

    name: Ident
    selector: Selector | None = None


class HeadLit(Node):
    """`L5H1`: query head 1 of layer 5 (0-based, as in TransformerLens)."""

    layer: int
    head: int


# ---- head-set expressions ------------------------------------------------------------

class SetName(Node):
    kind: Literal["name"] = "name"
    ref: SetRef


class SetLiteral(Node):
    kind: Literal["literal"] = "literal"
    heads: list[HeadLit]


class SetOp(Node):
    kind: Literal["op"] = "op"
    op: Literal["union", "intersect", "minus"]
    left: "SetExpr"
    right: "SetExpr"


SetExpr = Annotated[Union[SetName, SetLiteral, SetOp], Field(discriminator="kind")]
SetOp.model_rebuild()


# ---- statements --------------------------------------------------------------------------

class ModelStmt(Node):
    stmt: Literal["model"] = "model"
    name: Ident
    path: String
    options: list[Option] = Field(default_factory=list)


class RoleBinding(Node):
    role: Ident
    field: String


class DatasetStmt(Node):
    stmt: Literal["dataset"] = "dataset"
    name: Ident
    path: String
    roles: list[RoleBinding] = Field(default_factory=list)
    options: list[Option] = Field(default_factory=list)


class SetStmt(Node):
    stmt: Literal["set"] = "set"
    key: Ident
    value: Value


class Using(Node):
    method: Ident
    args: list[Option] = Field(default_factory=list)


class CircuitStmt(Node):
    stmt: Literal["circuit"] = "circuit"
    dataset: Ident
    model: ModelSel
    diff: ModelSel | None = None
    using: Using | None = None
    alias: Ident | None = None
    options: list[Option] = Field(default_factory=list)


class CohortStmt(Node):
    stmt: Literal["cohort"] = "cohort"
    set: Ident
    options: list[Option] = Field(default_factory=list)


class HeadSource(Node):
    """What an intervention edits: a named set (optionally its top K), literal heads, or a random
    control: ``random K`` (K heads drawn from the whole model) or ``random matching SET [top K]``
    (as many heads per layer as SET has, drawn from the heads outside it)."""

    set: SetRef | None = None
    top: int | None = None
    heads: list[HeadLit] = Field(default_factory=list)
    random: bool = False
    count: int | None = None
    """K of ``random K`` (None for ``random matching SET``)."""


class AblateStmt(Node):
    stmt: Literal["ablate"] = "ablate"
    source: HeadSource
    target: ModelSel | None = None
    alias: Ident | None = None
    options: list[Option] = Field(default_factory=list)


class ScaleStmt(Node):
    stmt: Literal["scale"] = "scale"
    source: HeadSource
    factor: Number
    target: ModelSel | None = None
    alias: Ident | None = None
    options: list[Option] = Field(default_factory=list)


class HeadsStmt(Node):
    stmt: Literal["heads"] = "heads"
    name: Ident
    expr: SetExpr


class EvalStmt(Node):
    stmt: Literal["eval"] = "eval"
    metric: Ident | None = None
    datasets: list[Ident] = Field(default_factory=list)
    targets: list[ModelSel] = Field(default_factory=list)
    options: list[Option] = Field(default_factory=list)


class ThinkStmt(Node):
    stmt: Literal["think"] = "think"
    mode: Ident


Statement = Annotated[
    Union[
        ModelStmt, DatasetStmt, SetStmt, CircuitStmt, CohortStmt, AblateStmt, ScaleStmt, HeadsStmt, EvalStmt, ThinkStmt
    ],
    Field(discriminator="stmt"),
]


class StudyAst(Node):
    statements: list[Statement] = Field(default_factory=list)
