"""The resolved study: names bound, options checked, defaults applied, globs expanded.

This is what the compiler (sparkql.plan.compile) turns into steps. Every
statement keeps its span, so a later error can still point at the text.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from sparkql.errors import Span
from sparkql.lang import ast as A
from sparkql.plan.steps import CircuitParams, DatasetRef, ExecOptions, ModelRef, ModelShape, SamplingParams


class R(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    span: Span | None = None


class ModelDecl(R):
    name: str
    written: str
    """The path as the study wrote it."""
    series: bool
    refs: list[ModelRef]
    shape: ModelShape | None = None
    dtype: str | None = None
    trust_remote_code: bool = False
    log_keys: list[str] | None = None
    """Numeric keys of the checkpoints' trainer_state.json logs (None: no log readable at check time)."""


class SetSource(R):
    """A head set operand after name binding."""

    kind: Literal["set", "literal"]
    name: str | None = None
    models: list[ModelRef] = Field(default_factory=list)
    """Instances chosen by a selector (set kind; empty = all instances)."""
    heads: list[tuple[int, int]] = Field(default_factory=list)


class RCircuit(R):
    kind: Literal["circuit"] = "circuit"
    dataset: DatasetRef
    models: list[ModelRef]
    base: ModelRef | None = None
    params: CircuitParams
    exec: ExecOptions
    set_name: str | None = None
    """`as NAME` (or `emergent` for a diff)."""
    n_examples: int | None = None
    """Rows the dataset has (for the cost estimate)."""
    folds: int | None = None
    """``with folds = K`` (K >= 2): score each leave-one-fold-out sample of the pairs too; None: no folds."""


class RHeads(R):
    kind: Literal["heads"] = "heads"
    name: str
    expr: A.SetExpr


class RCohort(R):
    kind: Literal["cohort"] = "cohort"
    set_name: str
    reward: str | None = None
    """``with reward = "KEY"``: the log_history key read as the reward (None: the default choice)."""


class RControl(R):
    """A random-head control: ``seeds`` draws of ``count`` heads (``random K``) or of as many heads
    per layer as the source set has (``random matching SET``), each draw a variant of its own."""

    draws: int
    seed: int
    count: int | None = None
    matches: str | None = None


class RIntervene(R):
    kind: Literal["intervene"] = "intervene"
    op: Literal["ablate", "scale"]
    factor: float
    label: str
    """`ablate emergent top 10`, or the `as` name."""
    source: SetSource
    top_k: int | None = None
    targets: list[ModelRef] | None = None
    """`on M`; None: the models the set was found in."""
    control: RControl | None = None
    """Set for `ablate random ...` / `scale random ...`: the variants are ``label #i``, i < draws."""

    def draw_labels(self) -> list[str]:
        """The variant label of each draw (one label, the statement's, for a chosen intervention)."""
        if self.control is None:
            return [self.label]
        return [draw_label(self.label, i) for i in range(self.control.draws)]


def draw_label(label: str, i: int) -> str:
    """The variant label of draw ``i`` (0-based) of a control: ``sft_controls #3``."""
    return f"{label} #{i}"


class EvalTarget(R):
    model: ModelRef
    variant: str | None = None
    """Label of an intervention variant; None for the intact model."""


class REval(R):
    kind: Literal["eval"] = "eval"
    datasets: list[DatasetRef]
    targets: list[EvalTarget]
    sampling: SamplingParams
    ks: list[int]
    think: bool
    system: str | None = None
    instruction: str
    examples: int | None = None
    dtype: str
    exec: ExecOptions
    n_problems: dict[str, int] = Field(default_factory=dict)
    extract: dict[str, str] = Field(default_factory=dict)
    """dataset name -> answer-extraction rule (strict | lenient) of its grade step."""


Resolved = Union[RCircuit, RHeads, RCohort, RIntervene, REval]


class Note(R):
    """A warning about the study (rendered like an error, with ``warning:``; nothing stops)."""

    message: str
    hint: str | None = None


class Study(R):
    file: str
    models: dict[str, ModelDecl]
    datasets: dict[str, DatasetRef]
    statements: list[Resolved]
    warnings: list[Note] = Field(default_factory=list)
    backend: str = "auto"
