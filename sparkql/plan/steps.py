"""The plan: a DAG of typed, content-addressed steps.

This module is the contract between the compiler (which builds steps from a
resolved Study) and the runtime (which executes them). The runtime never sees
the study text or the AST, only these objects.

Each step's ``key`` is the sha256 of the canonical JSON of its kind, its
``spec`` (with the keys of the steps it depends on in place of their content)
and :data:`KEY_VERSION`. ``exec`` options (device, memory budget, backend,
batch size) are deliberately *not* part of the key: they change how a result
is computed, not what it means, so a result computed on a GPU is reused on a
CPU and vice versa.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from sparkql.errors import Span

KEY_VERSION = 1
"""Bump when the meaning of any step's result changes, so old results are not reused."""

StepKind = Literal[
    "load_model", "edge_scores", "circuit", "diff", "heads", "fold_heads", "cohort", "intervene", "generate", "grade",
    "aggregate"
]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _OmitsUnset(Frozen):
    """A model whose optional fields in ``_OMIT_NONE`` are left out of its JSON when None (or an
    empty list): fields
    added after keys were first computed, so that a step that does not use them keeps its key (and
    its stored results) and plans that do not use them read as before."""

    _OMIT_NONE: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_none(self, handler):
        data = handler(self)
        for k in self._OMIT_NONE:
            if k in data and (data[k] is None or data[k] == []):
                del data[k]
        return data


class ModelRef(_OmitsUnset):
    """One concrete model (a single HF directory, or one checkpoint of a series)."""

    _OMIT_NONE: ClassVar[tuple[str, ...]] = ("base", "tokenizer")

    name: str
    """The name declared in the study (``model ckpt = ...``)."""
    label: str
    """Human label: ``base`` or ``ckpt[step=200]``."""
    path: str
    """Absolute path of the HF directory, or ``zoo:<series>/checkpoint-N`` for a zoo model."""
    step: int | None = None
    """Training step of a checkpoint (the integer in its directory name)."""
    index: int | None = None
    """Position in the series (0-based), None for a single model."""
    series_len: int | None = None
    """Number of checkpoints in the series this model belongs to."""
    fingerprint: str
    """Identifies the weights (config hash and weight files' sizes; zoo recipe hash)."""
    model_id: str
    """Stable id used in the store: sha256 of path and fingerprint, 16 hex chars."""
    base: str | None = None
    """A PEFT adapter checkpoint (``path`` holds adapter_config.json, no config.json): the base
    model it is merged into when loaded (an absolute directory or a ``zoo:`` path). The
    fingerprint then covers the adapter's files and the base's fingerprint."""
    tokenizer: str | None = None
    """The directory whose tokenizer the model is loaded with (``with tokenizer = NAME``: a checkpoint
    saved without tokenizer files); None: the model's own (an adapter's: its own, else its base's).
    Part of the key when set (other tokens, other results)."""
    trust_remote_code: bool = Field(False, exclude_if=lambda v: not v)
    """Whether the loader may run Python code from the model directory (`trust_remote_code = on`).
    Part of the key only when on (the model's own code may compute other results); left out of
    the JSON at the default, so keys of studies that never set it do not change."""


class ModelShape(Frozen):
    """What the compiler could read from config.json (None when the directory does not exist yet)."""

    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_size: int
    context_length: int | None = None
    """Positions the model attends over (``max_position_embeddings``), when config.json says."""


class DatasetRef(Frozen):
    """A dataset file with its role mapping."""

    name: str
    """Declared or builtin name (``aime24``)."""
    path: str
    """Absolute path of the file."""
    format: Literal["jsonl", "json", "csv", "parquet"]
    roles: dict[str, str]
    """role -> field name; roles: problem, answer, clean, corrupt, id, choices."""
    builtin: bool = False
    grader: Literal["math", "gsm8k", "triviaqa", "gpqa", "exact"] = "math"
    """How completions are graded."""
    fingerprint: str
    """sha256 of the file's bytes (datasets are small) so an edited file is recomputed."""
    bad_rows: Literal["error", "skip"] = Field("error", exclude_if=lambda v: v == "error")
    """Rows with a mapped field missing, null or of the wrong type: refused (``error``) or dropped
    (``skip``). Left out of the JSON (and so of every step key) at its default."""


class ScoringParams(Frozen):
    """What an EAP-IG edge scoring depends on: the key of an ``edge_scores`` step (docs/eap_ig.md).
    Selection options (``top_n``, ``tau``) are not here, so a study that changes only them
    re-selects from the stored scores."""

    method: Literal["eap_ig"] = "eap_ig"
    ig_steps: int = 100
    metric: Literal["kl", "logit_diff", "prob"] = "kl"
    corrupt: Literal["pairs", "digits", "shuffle"] = "digits"
    prefix: str | None = None
    """Literal answer opening appended to the prompt; None for none. Ignored when ``prefix_sample`` > 0."""
    prefix_sample: int = 0
    """>0: take the model's own greedy opening of this many tokens (``prefix = sample``)."""
    max_tokens: int | None = None
    """Truncate prompts to this many tokens (None: no limit)."""
    examples: int | None = None
    """Use only the first N usable examples (None: all)."""
    think: bool = True
    """Chat-template thinking on/off."""
    system: str | None = None
    """Optional system prompt."""
    seed: int = 0
    dtype: Literal["fp64", "fp32", "bf16", "fp16", "auto"] = "auto"
    """The compiler resolves ``auto`` (bf16 on a GPU, fp32 on a CPU) before keying."""


class CircuitParams(ScoringParams):
    """EAP-IG options (docs/eap_ig.md): the scoring's, and the selection's."""

    top_n: int = 5000
    tau: float = 0.1

    def scoring(self) -> ScoringParams:
        return ScoringParams(**self.model_dump(exclude={"top_n", "tau"}))


class SamplingParams(Frozen):
    """Every generation field, explicit (docs/evaluation.md)."""

    n: int = 4
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 0
    """0 disables top-k."""
    min_p: float = 0.0
    max_tokens: int = 32768
    seed: int = 0


class HeadExpr(Frozen):
    """A head-set expression, evaluated per model at run time.

    op = ``circuit``: the heads of circuit step ``ref`` (score: head score of docs/eap_ig.md);
    op = ``set``: the head set produced by step ``ref``;
    op = ``literal``: ``heads`` ([layer, head] pairs, score 0);
    op = ``union`` | ``intersect`` | ``minus``: of ``args``. Scores come from the left-most
    operand that has the head.
    """

    op: Literal["circuit", "set", "literal", "union", "intersect", "minus"]
    ref: str | None = None
    heads: list[tuple[int, int]] = Field(default_factory=list)
    args: list["HeadExpr"] = Field(default_factory=list)


class LoadModelSpec(Frozen):
    """Register a model: check its architecture is supported, record its shape in ``models``.
    Zoo models (``zoo:`` paths) are built here when missing."""

    kind: Literal["load_model"] = "load_model"
    model: ModelRef
    dtype: Literal["fp64", "fp32", "bf16", "fp16", "auto"] = "auto"


class Fold(Frozen):
    """One leave-one-fold-out sample of a circuit's pairs (``with folds = K``): the pairs are split
    into ``k`` folds by ``sparkql.runtime.eap.folds.assign_folds`` (seeded by the scoring's seed) and
    the scoring uses every pair outside fold ``index``."""

    k: int
    index: int
    """0-based fold held out."""


class EdgeScoresSpec(_OmitsUnset):
    """EAP-IG edge scores of one model on one dataset -> ``scorings``, ``edge_scores``."""

    _OMIT_NONE: ClassVar[tuple[str, ...]] = ("fold",)

    kind: Literal["edge_scores"] = "edge_scores"
    model: ModelRef
    dataset: DatasetRef
    params: ScoringParams
    fold: Fold | None = None
    """Score only the pairs outside one fold; None (left out of the key): every pair."""


class CircuitSpec(Frozen):
    """A circuit selected from stored edge scores (step ``scores_key``), with its faithfulness
    -> ``circuits``, ``edges``, ``nodes``."""

    kind: Literal["circuit"] = "circuit"
    model: ModelRef
    dataset: DatasetRef
    params: CircuitParams
    scores_key: str
    """Key of the ``edge_scores`` step whose scores this circuit selects from."""


class HeadSetSpec(Frozen):
    """A named head set of one model -> ``head_sets`` rows (``set_key`` = this step's key).
    kind ``diff`` is the emergent set (model circuit minus base circuit), ``heads`` anything else."""

    kind: Literal["diff", "heads"]
    name: str
    model: ModelRef
    expr: HeadExpr
    top_k: int | None = None
    """Keep only the K highest-scoring heads (None: all)."""


class FoldHeadsSpec(_OmitsUnset):
    """Selection frequency over folds (``with folds = K``) -> ``fold_heads``: the circuit's selection
    (``top_n``, ``tau``, pruning) applied to each fold's stored scores (``scores_keys``), and with
    ``base_scores_keys`` the emergent set of each fold (fold i of the model minus fold i of the base).
    A head's frequency is the share of the K folds in which it is selected."""

    _OMIT_NONE: ClassVar[tuple[str, ...]] = ("base", "base_scores_keys", "base_circuit_key", "set_name", "set_key")

    kind: Literal["fold_heads"] = "fold_heads"
    model: ModelRef
    top_n: int
    tau: float
    scores_keys: list[str]
    """The ``edge_scores`` step of each fold, in fold order."""
    circuit_key: str
    """The model's circuit on every pair (its heads are marked ``in_full``)."""
    base: ModelRef | None = None
    base_scores_keys: list[str] = Field(default_factory=list)
    base_circuit_key: str | None = None
    set_name: str | None = None
    """The head set the circuit's (or the emergent) heads are named (``as NAME``), if any."""
    set_key: str | None = None
    """That set's step key (for joins with ``head_sets``; not a dependency)."""


class CohortMember(Frozen):
    model: ModelRef
    set_key: str
    """Step key of the emergent set of this checkpoint."""
    circuit_key: str
    """Step key of this checkpoint's circuit."""


class CohortSpec(_OmitsUnset):
    """Cohort analysis of an emergent set across a checkpoint series (docs/store.md, cohorts)."""

    _OMIT_NONE: ClassVar[tuple[str, ...]] = ("reward",)

    kind: Literal["cohort"] = "cohort"
    name: str
    """The emergent set's name."""
    series: list[CohortMember]
    """Ordered by step."""
    base: ModelRef
    base_circuit_key: str
    reward: str | None = None
    """``with reward = "KEY"``: the trainer_state.json log_history key read as the reward (None: the
    default choice, sparkql.store.cohorts.pick_reward_key)."""


class RandomDraw(Frozen):
    """One draw of a random-head control (``ablate random K``, ``... random matching SET [top K]``).

    The heads are drawn at run time (a matching draw needs the set's heads) by
    ``sparkql.runtime.steps.controls.draw_heads``: a pure function of (shape, set, seed, draw)
    that ranks candidate heads by a sha256 hash, so a draw is the same on every machine."""

    group: str
    """Label of the control statement (its `as` name, or the statement as written)."""
    draw: int
    """0-based draw index (of ``seeds = N``)."""
    seed: int
    count: int | None = None
    """K of ``random K``; None: as many heads per layer as the ``heads`` expression has, drawn
    from the heads outside it."""
    matches: str | None = None
    """The matched set's name (``random matching SET``)."""


class InterveneSpec(_OmitsUnset):
    """An intervention variant: resolves its concrete heads (from sets, at run time) into ``variants``.
    Weights are edited by the generate steps that use the variant."""

    _OMIT_NONE: ClassVar[tuple[str, ...]] = ("random",)

    kind: Literal["intervene"] = "intervene"
    variant: str
    """Variant label, e.g. ``ablate emergent top 10``."""
    model: ModelRef
    """The model whose heads are edited."""
    op: Literal["ablate", "scale"]
    factor: float = 0.0
    """Scale factor (0 for ablate)."""
    heads: HeadExpr
    """Evaluated against the set steps' results; for a set found in several models and applied
    to another, the union over those models with each head's max score."""
    top_k: int | None = None
    random: RandomDraw | None = None
    """A random control's draw: the heads edited are drawn (``heads`` is then the set matched, or
    empty for ``random K``). None (left out of the key) for a chosen intervention."""


class GenerateSpec(Frozen):
    """Sample completions of one (model, variant) on one dataset -> ``evals``, ``samples``."""

    kind: Literal["generate"] = "generate"
    model: ModelRef
    variant_key: str | None = None
    """Key of the intervene step, None for the intact model."""
    variant: str = "intact"
    dataset: DatasetRef
    sampling: SamplingParams
    think: bool = True
    system: str | None = None
    instruction: str = "Let's think step by step and output the final answer within \\boxed{}."
    examples: int | None = None
    """Use only the first N problems (None: all)."""
    dtype: Literal["fp64", "fp32", "bf16", "fp16", "auto"] = "auto"


class GradeSpec(Frozen):
    """Grade the samples of a generate step (fills ``extracted``, ``status``, ``correct``)."""

    kind: Literal["grade"] = "grade"
    generate_key: str
    grader: Literal["math", "gsm8k", "triviaqa", "gpqa", "exact"] = "math"
    think: bool = True
    seed: int = 0
    """Seed of the GPQA option shuffle."""
    extract: Literal["strict", "lenient"] = "strict"
    """Answer extraction for math (strict: the last \\boxed{}; lenient: Math-Verify's order)."""

    @model_serializer(mode="wrap")
    def _omit_default_extract(self, handler):
        # ``strict`` is what every grade step did before the option existed: leaving it out of
        # the dump keeps those steps' keys (and results) valid.
        data = handler(self)
        if isinstance(data, dict) and data.get("extract") == "strict":
            del data["extract"]
        return data


class AggregateSpec(Frozen):
    """pass@k, success@k and accuracy of a graded eval -> ``metrics``."""

    kind: Literal["aggregate"] = "aggregate"
    generate_key: str
    grade_key: str
    ks: list[int]
    bootstrap: int = 1000
    seed: int = 0


StepSpec = Annotated[
    Union[
        LoadModelSpec, EdgeScoresSpec, CircuitSpec, HeadSetSpec, FoldHeadsSpec, CohortSpec, InterveneSpec, GenerateSpec,
        GradeSpec, AggregateSpec
    ],
    Field(discriminator="kind"),
]


class ExecOptions(Frozen):
    """How to run a step. Not part of the key."""

    device: Literal["cpu", "cuda", "auto"] = "auto"
    memory: str | None = None
    """Hard memory budget of a circuit (EAP-IG and faithfulness), e.g. ``8GiB`` (None: sparkql.plan.sizing.default_budget)."""
    backend: Literal["transformers", "vllm", "auto"] = "auto"
    """As the study asked; the generate step decides ``auto`` when it runs (runtime/generation/backend.py)."""
    vllm_memory: float | None = None
    """Memory of a vLLM engine: <= 1 a fraction of the device's memory, > 1 a KV cache size in bytes
    (None: 0.8 on a GPU, 1 GiB of KV cache on a CPU)."""
    batch_size: int | None = None


class Cost(Frozen):
    """Rough cost estimate shown by ``sparkql plan``."""

    forward_backward: int = 0
    """Forward+backward passes (per example-step of IG)."""
    forward: int = 0
    tokens: int = 0
    """Tokens to generate (upper bound: max_tokens x samples x problems)."""


class Step(Frozen):
    key: str
    """Content address (see module doc)."""
    kind: StepKind
    label: str
    """One line for humans: ``circuit aime24 on ckpt[step=200]``."""
    deps: list[str] = Field(default_factory=list)
    """Keys of the steps whose results this step reads."""
    spec: StepSpec
    exec: ExecOptions = ExecOptions()
    cost: Cost = Cost()
    span: Span | None = None
    """The statement that produced this step."""


class Plan(_OmitsUnset):
    _OMIT_NONE: ClassVar[tuple[str, ...]] = ("warnings",)

    study: str
    """Path (or ``<text>``) of the study."""
    steps: list[Step]
    """Topologically ordered: every dep comes before the step that needs it."""
    backend: str = "auto"
    """Generation backend the study asks for (``auto``, ``transformers`` or ``vllm``). Which one
    runs is decided at run time, per generate step, by
    ``sparkql.runtime.generation.backend.choose_backend`` (``sparkql plan`` shows its choice)."""
    warnings: list[str] = Field(default_factory=list)
    """The compiler's warnings, rendered (``file:line:col: warning: ...``, the line, a caret, a hint):
    things a study may do but probably did not mean, such as a series that mixes two runs."""

    def by_key(self) -> dict[str, Step]:
        return {s.key: s for s in self.steps}


def canonical_json(obj) -> str:
    """Canonical JSON: sorted keys, no whitespace, floats as repr."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


_PRESENTATION_ONLY = ("name", "label", "index", "series_len")


def _identity(obj):
    """Drop the fields of model references that only present a model (its study-local name,
    label, position in a series): a checkpoint's results stay valid when the study renames it
    or when the series grows."""
    if isinstance(obj, dict):
        is_model_ref = "model_id" in obj and "fingerprint" in obj
        return {
            k: _identity(v) for k, v in obj.items() if not (is_model_ref and k in _PRESENTATION_ONLY)
        }
    if isinstance(obj, list):
        return [_identity(v) for v in obj]
    return obj


def step_key(kind: str, spec: BaseModel) -> str:
    """Content address of a step: sha256 over kind, spec (identity fields only) and KEY_VERSION."""
    payload = {"v": KEY_VERSION, "kind": kind, "spec": _identity(spec.model_dump(mode="json"))}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
