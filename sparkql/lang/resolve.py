"""AST -> Study: bind names, check options and types, expand globs, apply `set` defaults.

Checks made here (each a SparkError pointing at the text): unknown model,
dataset or head-set names (with did-you-mean), duplicate names, misspelled
options and wrong value types, bad selectors (out of range, a step that is
not in the series, a selector on a single model), empty globs and missing
files, head indices outside the model's shape once config.json is known,
datasets without the roles a statement needs, k > n; series members that are
not loadable models, adapter checkpoints without a findable base, and reward
keys no checkpoint logs (sparkql.lang.series, which also warns about series
that mix training runs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from sparkql.builtins import BUILTIN_DATASETS, USER_PATH_ONLY
from sparkql.errors import Span, SparkError, SparkErrors, known_names_hint
from sparkql.lang import ast as A
from sparkql.lang import options as O
from sparkql.lang import setexpr
from sparkql.lang.fmt import fmt_selector
from sparkql.lang.paths import dataset_fingerprint, find_file, find_models
from sparkql.lang.study import (
    EvalTarget, ModelDecl, Note, RCircuit, RCohort, RControl, REval, RHeads, RIntervene, SetSource, Study,
)
from sparkql.plan.steps import CircuitParams, DatasetRef, ExecOptions, ModelRef, ModelShape, SamplingParams
from sparkql.runtime.models.device import concrete_dtype

_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class SetInfo:
    name: str
    domain: list[ModelRef] | None
    """Models the set has an instance for; None for a model-free literal set."""
    span: Span | None
    is_diff: bool = False
    series_name: str | None = None
    literal: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class VariantInfo:
    label: str
    alias: str | None
    targets: list[ModelRef]
    labels: list[str] = field(default_factory=list)
    """The variant label of each draw of a random control; [label] for a chosen intervention."""


@dataclass
class Env:
    study_dir: Path | None
    models: dict[str, ModelDecl] = field(default_factory=dict)
    datasets: dict[str, DatasetRef] = field(default_factory=dict)
    sets: dict[str, SetInfo] = field(default_factory=dict)
    variants: list[VariantInfo] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    think: bool = True
    used_models: list[ModelRef] = field(default_factory=list)
    circuit_datasets: list[DatasetRef] = field(default_factory=list)
    dataset_rows: dict[str, int] = field(default_factory=dict)
    dataset_extract: dict[str, str] = field(default_factory=dict)
    """``extract`` given on a dataset statement (kept out of DatasetRef: it changes how answers
    are graded, not what is generated, so it must not change the generate step's key)."""
    warnings: list[Note] = field(default_factory=list)


def _model_id(path: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{path}\0{fingerprint}".encode()).hexdigest()[:16]


def _shape(config: dict | None, where: str, span: Span) -> ModelShape | None:
    if not config:
        return None
    from sparkql.runtime.models.config import model_shape

    try:
        return model_shape(config, where=where)
    except SparkError as e:
        e.span = span
        raise


class Resolver:
    def __init__(self, file: str, study_dir: Path | None):
        self.file = file
        self.env = Env(study_dir=study_dir)
        self.out: list = []
        self.broken: set[str] = set()

    # ---- models ---------------------------------------------------------------------
    def model_stmt(self, s: A.ModelStmt) -> None:
        from sparkql.lang.series import AdapterBases, adapter_fingerprint, check_series_log

        name = s.name.name
        self._no_duplicate(name, s.name.span)
        opts = O.check_options(s.options, O.MODEL_OPTIONS, "model")
        found = find_models(s.path.value, s.path.span, self.env.study_dir)
        is_zoo = s.path.value.startswith("zoo:")
        series = any(ch in s.path.value for ch in "*?[") or (is_zoo and len(found) > 1) or (is_zoo and "/" in s.path.value)
        base_opt = opts.get("base")
        if base_opt is not None and not any(f.adapter for f in found):
            raise SparkError(f"option `base` names the base model of PEFT adapter checkpoints, and `{name}` is a full "
                             "model (config.json and weights)", span=base_opt.span, hint="remove `base = ...`")
        if "series" in opts and not series:
            opt = next(o for o in s.options if o.key.name == "series")
            raise SparkError(f"`series` is an option of a checkpoint series, and `{name}` is one model", span=opt.span,
                             hint='a series is a glob like "runs/grpo/checkpoint-*"')
        bases = AdapterBases(s, self.env.models, self.env.study_dir, base_opt, _shape)
        trust = opts.get("trust_remote_code", self.env.settings.get("trust_remote_code", False))
        tok_dir = self._tokenizer_dir(name, opts.get("tokenizer"), found, s)
        refs = []
        first_base = None
        for i, f in enumerate(found):
            label = f"{name}[step={f.step}]" if series and f.step is not None else (f"{name}[{i}]" if series else name)
            fingerprint, base = f.fingerprint, None
            if f.adapter:
                b = bases.for_member(f)
                first_base = first_base or b
                fingerprint, base = adapter_fingerprint(f.fingerprint, b.fingerprint), b.path
            refs.append(ModelRef(
                name=name, label=label, path=f.path, step=f.step if series else None,
                index=i if series else None, series_len=len(found) if series else None,
                fingerprint=fingerprint, model_id=_model_id(f.path, fingerprint), base=base, trust_remote_code=trust,
                tokenizer=tok_dir,
            ))
        config = found[0].config if not found[0].adapter else (first_base.config if first_base else None)
        shape = None
        if config is not None:
            from sparkql.runtime.models.adapters import adapter_for_config

            try:
                adapter_for_config(config, where=name)
            except SparkError as e:
                e.span = s.path.span
                raise
            shape = _shape(config, name, s.path.span)
        elif found[0].adapter and first_base is not None:
            shape = first_base.shape
        elif is_zoo:
            from sparkql import zoo

            shape = ModelShape(**zoo.model_shape())
        log_keys = None
        if series and not is_zoo:
            log_keys = check_series_log(name, found, s.path.span, opts.get("series") == "strict", self._warn)
        self.env.models[name] = ModelDecl(
            name=name, written=s.path.value, series=series, refs=refs, shape=shape, dtype=opts.get("dtype"),
            trust_remote_code=trust, span=s.span,
            log_keys=sorted(log_keys) if log_keys is not None else None,
        )

    def _tokenizer_dir(self, name: str, opt, found, s: A.ModelStmt) -> str | None:
        """``with tokenizer = NAME | "path"``: the directory whose tokenizer the models load with.
        Without it, a full-model checkpoint that has no tokenizer files is refused here (transformers
        5 would load an empty tokenizer, and the circuit fail later with no usable pairs)."""
        from sparkql.runtime.models.checkpoint import TOKENIZER_FILES, has_tokenizer

        if opt is None:
            bare = [f for f in found if not f.adapter and not f.path.startswith("zoo:") and not has_tokenizer(Path(f.path))]
            if bare:
                names = ", ".join(Path(f.path).name for f in bare[:4]) + (f" and {len(bare) - 4} more" if len(bare) > 4 else "")
                what = "checkpoint" if len(found) > 1 else "model directory"
                raise SparkError(
                    f"`{name}`: {what} {names} {'has' if len(bare) == 1 else 'have'} no tokenizer files "
                    f"({', '.join(TOKENIZER_FILES[:3])}, ...)", span=s.path.span,
                    hint=("copy the tokenizer files into it, or take the tokenizer of a declared model (the series' base): "
                          f'model {name} = "{s.path.value}" with tokenizer = base') if len(found) > 1 else
                         'copy the tokenizer files into it, or name a directory that has them: with tokenizer = "PATH"')
            return None
        if isinstance(opt, A.Word):
            decl = self.env.models.get(opt.value)
            if decl is None:
                raise SparkError(f"unknown model `{opt.value}`", span=opt.span,
                                 hint=known_names_hint(opt.value, self.env.models, "models") + '; or give a "path"')
            if decl.series:
                raise SparkError(f"`{opt.value}` is a series; the tokenizer comes from one model", span=opt.span,
                                 hint="name the series' base model")
            ref = decl.refs[0]
            path = ref.tokenizer or (ref.base if ref.base is not None and not has_tokenizer(Path(ref.path)) else ref.path)
        else:
            hits = find_models(opt.value, opt.span, self.env.study_dir)
            if len(hits) != 1:
                raise SparkError(f'"{opt.value}" names {len(hits)} models; the tokenizer comes from one', span=opt.span)
            path = hits[0].path
        if not path.startswith("zoo:") and not has_tokenizer(Path(path)):
            raise SparkError(f"{path} has no tokenizer files either ({', '.join(TOKENIZER_FILES[:3])}, ...)", span=opt.span,
                             hint="name a model directory that holds a tokenizer")
        return path

    def _warn(self, message: str, span: Span | None, hint: str | None = None) -> None:
        self.env.warnings.append(Note(message=message, hint=hint, span=span))

    def _no_duplicate(self, name: str, span: Span | None) -> None:
        kinds = [("model", self.env.models), ("dataset", self.env.datasets), ("head set", self.env.sets)]
        for kind, table in kinds:
            if name in table:
                raise SparkError(f"`{name}` is already declared as a {kind}", span=span, hint="choose another name")

    def select(self, sel: A.ModelSel) -> list[ModelRef]:
        name = sel.name.name
        decl = self.env.models.get(name)
        if decl is None:
            self._skip_if_broken(name)
            hint = known_names_hint(name, self.env.models, "models")
            if name in self.env.sets:
                hint = f"`{name}` is a head set, not a model"
            raise SparkError(f"unknown model `{name}`", span=sel.name.span, hint=hint)
        return self._apply_selector(decl.refs, sel.selector, name, decl.series)

    def _apply_selector(self, refs: list[ModelRef], s: A.Selector | None, name: str, series: bool) -> list[ModelRef]:
        if s is None or s.kind == "all":
            return list(refs)
        if not series:
            raise SparkError(f"`{name}` is a single model; {fmt_selector(s)} selects checkpoints of a series",
                             span=s.span, hint=f"write `{name}` alone")
        n = len(refs)
        if s.kind == "index":
            if not -n <= s.index < n:
                raise SparkError(f"{name}{fmt_selector(s)}: index out of range ({name} has {n} checkpoints)",
                                 span=s.span, hint=f"use 0..{n - 1} or -1 for the last")
            return [refs[s.index]]
        if s.kind == "slice":
            picked = refs[s.start:s.stop]
            if not picked:
                raise SparkError(f"{name}{fmt_selector(s)} selects no checkpoint ({name} has {n})", span=s.span,
                                 hint=f"slices count checkpoints 0..{n - 1}")
            return picked
        steps = [r.step for r in refs]
        if s.step not in steps:
            raise SparkError(f"{name} has no checkpoint at step {s.step}", span=s.span,
                             hint="steps: " + ", ".join(str(x) for x in steps[:20]) + (" ..." if n > 20 else ""))
        return [refs[steps.index(s.step)]]

    def _single(self, sel: A.ModelSel, what: str) -> ModelRef:
        refs = self.select(sel)
        if len(refs) != 1:
            raise SparkError(f"{what} needs one model, but `{sel.name.name}` is a series of {len(refs)}", span=sel.span,
                             hint=f"pick one: {sel.name.name}[-1] or {sel.name.name}[step=N]")
        return refs[0]

    def _shape_of(self, ref: ModelRef) -> ModelShape | None:
        decl = self.env.models.get(ref.name)
        return decl.shape if decl else None

    def _check_heads(self, heads: list[A.HeadLit], models: list[ModelRef]) -> None:
        for ref in models:
            shape = self._shape_of(ref)
            if shape is None:
                continue
            for h in heads:
                if h.layer >= shape.n_layers:
                    raise SparkError(f"L{h.layer}H{h.head}: layer {h.layer} is out of range for {ref.name} "
                                     f"({shape.n_layers} layers: L0..L{shape.n_layers - 1})", span=h.span)
                if h.head >= shape.n_heads:
                    raise SparkError(f"L{h.layer}H{h.head}: head {h.head} is out of range for {ref.name} "
                                     f"({shape.n_heads} query heads: H0..H{shape.n_heads - 1})", span=h.span)

    # ---- datasets -------------------------------------------------------------------
    def dataset_stmt(self, s: A.DatasetStmt) -> None:
        name = s.name.name
        self._no_duplicate(name, s.name.span)
        opts = O.check_options(s.options, O.DATASET_OPTIONS, "dataset")
        path = find_file(s.path.value, s.path.span, self.env.study_dir)
        fmt = opts.get("format") or _FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise SparkError(f"cannot tell the format of {path.name}", span=s.path.span,
                             hint="use .jsonl, .json, .csv or .parquet, or `with format = jsonl`")
        roles: dict[str, str] = {}
        for rb in s.roles:
            if rb.role.name not in O.ROLES:
                raise SparkError(f"unknown role `{rb.role.name}`", span=rb.role.span,
                                 hint=known_names_hint(rb.role.name, O.ROLES, "roles"))
            if rb.role.name in roles:
                raise SparkError(f"role `{rb.role.name}` is mapped twice", span=rb.role.span)
            roles[rb.role.name] = rb.field.value
        from sparkql.runtime.datasets import read_located, survey

        try:
            located = read_located(path, fmt)
        except SparkError as e:
            e.span = s.path.span
            raise
        if not located:
            raise SparkError(f"dataset file {path.name} has no rows", span=s.path.span,
                             hint="an empty file: check the path, or that the export finished")
        first = located[0][1]
        for rb in s.roles:
            if rb.field.value not in first:
                raise SparkError(f'{path.name} has no field "{rb.field.value}"', span=rb.field.span,
                                 hint=known_names_hint(rb.field.value, first, "fields"))
        for role in O.ROLES:  # unmapped roles default to fields of the same name
            if role not in roles and role in first:
                roles[role] = role
        if "problem" not in roles and "question" in first:
            roles["problem"] = "question"
        grader = opts.get("grader") or ("gpqa" if name == "gpqa" else "math")
        ref = DatasetRef(name=name, path=str(path), format=fmt, roles=roles, builtin=False, grader=grader,
                         fingerprint=dataset_fingerprint(path), bad_rows=opts.get("bad_rows", "error"))
        try:
            found = survey(ref, located)
        except SparkError as e:
            e.span = s.path.span
            raise
        if found.dropped:
            shown = "; ".join(found.dropped[:3]) + ("; ..." if len(found.dropped) > 3 else "")
            if not found.n_rows:
                raise SparkError(f"dataset `{name}`: every row of {path.name} is dropped by bad_rows = skip ({shown})",
                                 span=s.path.span, hint="fix the file or the role mapping")
            self._warn(f"dataset `{name}`: {len(found.dropped)} of {len(located)} rows of {path.name} dropped "
                       f"(bad_rows = skip): {shown}", s.path.span, hint="fix those rows to use them")
        self.env.datasets[name] = ref
        self.env.dataset_rows[name] = found.n_rows
        if "extract" in opts:
            self.env.dataset_extract[name] = opts["extract"]

    def dataset(self, ident: A.Ident) -> DatasetRef:
        name = ident.name
        if name in self.env.datasets:
            return self.env.datasets[name]
        if name in BUILTIN_DATASETS:
            b = BUILTIN_DATASETS[name]
            if not b.path.is_file():
                raise SparkError(f"builtin dataset `{name}` is missing from this installation ({b.path})", span=ident.span)
            ref = DatasetRef(name=name, path=str(b.path), format="jsonl", roles=dict(b.roles), builtin=True,
                             grader=b.grader, fingerprint=dataset_fingerprint(b.path))
            self.env.datasets[name] = ref
            self.env.dataset_rows[name] = _count_rows(b.path, "jsonl")
            return ref
        self._skip_if_broken(name)
        if name in USER_PATH_ONLY:
            raise SparkError(f"`{name}` must be declared with a path", span=ident.span, hint=USER_PATH_ONLY[name])
        pool = list(self.env.datasets) + list(BUILTIN_DATASETS)
        raise SparkError(f"unknown dataset `{name}`", span=ident.span, hint=known_names_hint(name, pool, "datasets"))

    # ---- settings -------------------------------------------------------------------
    def set_stmt(self, s: A.SetStmt) -> None:
        key = s.key.name
        spec = O.SET_KEYS.get(key)
        if spec is None:
            if key == "think":
                raise SparkError("thinking is switched with the `think on|off` statement", span=s.key.span,
                                 hint="write `think off`")
            raise SparkError(f"unknown setting `{key}`", span=s.key.span, hint=known_names_hint(key, O.SET_KEYS, "settings"))
        self.env.settings[key] = O.check_value(spec, s.value)

    def think_stmt(self, s: A.ThinkStmt) -> None:
        if s.mode.name not in ("on", "off"):
            raise SparkError(f"`think` takes on or off, not `{s.mode.name}`", span=s.mode.span, hint="think on | think off")
        self.env.think = s.mode.name == "on"

    def _get(self, key: str, opts: dict, table: dict | None = None):
        """An option's value: the statement's own, else the latest `set`, else the default."""
        if key in opts:
            return opts[key]
        if key in self.env.settings:
            return self.env.settings[key]
        spec = (table or {}).get(key) or O.SET_KEYS.get(key)
        return spec.default if spec else None

    def _exec(self, opts: dict) -> ExecOptions:
        mem = self._get("memory", opts)
        return ExecOptions(
            device=self._get("device", opts) or "auto",
            memory=str(mem) if mem is not None else None,
            backend=self._get("backend", opts) or "auto",
            vllm_memory=self._get("vllm_memory", opts),
            batch_size=self._get("batch_size", opts),
        )

    def _dtype(self, opts: dict, models: list[ModelRef]) -> str:
        if "dtype" in opts:
            return opts["dtype"]
        if "dtype" in self.env.settings:
            return self.env.settings["dtype"]
        decls = {self.env.models[m.name].dtype for m in models if m.name in self.env.models}
        decls.discard(None)
        return decls.pop() if len(decls) == 1 else "auto"

    def _within_context(self, key: str, s, models: list[ModelRef]) -> None:
        """A token count the study writes (in the statement or a `set`) must fit every model's context."""
        opt = next((o for o in s.options if o.key.name == key), None)
        if s.__class__ is A.CircuitStmt and opt is None and s.using is not None:
            opt = next((o for o in s.using.args if o.key.name == key), None)
        if opt is not None and isinstance(opt.value, A.Number):
            value, span = opt.value.value, opt.value.span
        elif key in self.env.settings:
            value, span = self.env.settings[key], s.span
        else:
            return  # the default: generation stops at the context by itself
        for ref in models:
            shape = self._shape_of(ref)
            ctx = shape.context_length if shape else None
            if ctx is not None and isinstance(value, int) and value > ctx:
                raise SparkError(f"{key} = {value} is more than the context length of `{ref.name}` ({ctx} tokens, "
                                 "max_position_embeddings in its config.json)", span=span, hint=f"use {key} <= {ctx}")

    def _use(self, refs: list[ModelRef]) -> None:
        for r in refs:
            if r.model_id not in {u.model_id for u in self.env.used_models}:
                self.env.used_models.append(r)

    # ---- circuits -------------------------------------------------------------------
    def circuit_stmt(self, s: A.CircuitStmt) -> None:
        dataset = self.dataset(s.dataset)
        models = self.select(s.model)
        base = self._single(s.diff, "diff") if s.diff else None
        args: dict = {}
        if s.using is not None:
            if s.using.method.name not in O.METHODS:
                raise SparkError(f"unknown circuit method `{s.using.method.name}`", span=s.using.method.span,
                                 hint=known_names_hint(s.using.method.name, O.METHODS, "methods"))
            args = O.check_options(s.using.args, O.CIRCUIT_OPTIONS, s.using.method.name)
        opts = O.check_options(s.options, O.CIRCUIT_WITH, "circuit")
        for k in args:
            if k in opts:
                raise SparkError(f"option `{k}` is given both in using(...) and with", span=s.span, hint="keep one")
        opts = {**args, **opts}
        is_pairs = "clean" in dataset.roles and "corrupt" in dataset.roles
        if not is_pairs and "problem" not in dataset.roles:
            raise SparkError(f"dataset `{dataset.name}` has neither clean/corrupt prompts nor problems", span=s.dataset.span,
                             hint='map its fields: dataset d = "f.jsonl" (clean = "...", corrupt = "...") or (problem = "...")')
        corrupt = self._get("corrupt", opts, O.CIRCUIT_OPTIONS) or ("pairs" if is_pairs else "digits")
        if corrupt == "pairs" and not is_pairs:
            raise SparkError(f"corrupt = pairs, but dataset `{dataset.name}` has no clean/corrupt fields", span=s.dataset.span,
                             hint="use corrupt = digits or shuffle, or map clean/corrupt roles")
        metric = self._get("metric", opts, O.CIRCUIT_OPTIONS)
        if metric in ("logit_diff", "prob") and "answer" not in dataset.roles:
            raise SparkError(f"metric = {metric} needs the dataset's answers, and `{dataset.name}` has no answer role",
                             span=s.dataset.span, hint="use metric = kl, or map an answer field")
        prefix = self._get("prefix", opts, O.CIRCUIT_OPTIONS)
        if prefix is None:
            prefix = "none" if is_pairs else "sample"
        think = opts.get("think", self.env.think)
        params = CircuitParams(
            ig_steps=self._get("steps", opts, O.CIRCUIT_OPTIONS),
            top_n=self._get("top_n", opts, O.CIRCUIT_OPTIONS),
            tau=float(self._get("tau", opts, O.CIRCUIT_OPTIONS)),
            metric=metric,
            corrupt=corrupt,
            prefix=None if prefix in ("sample", "none") else prefix,
            prefix_sample=self._get("prefix_tokens", opts, O.CIRCUIT_OPTIONS) if prefix == "sample" else 0,
            max_tokens=self._get("max_tokens", opts, O.CIRCUIT_OPTIONS) if "max_tokens" in opts or "max_tokens" in self.env.settings else None,
            examples=self._get("examples", opts, O.CIRCUIT_OPTIONS),
            think=think,
            system=self._get("system", opts),
            seed=self._get("seed", opts),
            # resolved before keying: an fp32 CPU circuit is not a bf16 GPU circuit
            dtype=concrete_dtype(self._dtype(opts, models + ([base] if base else [])),
                                 self._get("device", opts) or "auto"),
        )
        self._within_context("max_tokens", s, models + ([base] if base else []))
        self._within_context("prefix_tokens", s, models + ([base] if base else []))
        folds = self._folds(s, opts, dataset, params.examples)
        set_name = s.alias.name if s.alias else ("emergent" if base else None)
        if set_name is not None:
            span = s.alias.span if s.alias else s.span
            for kind, table in (("head set", self.env.sets), ("model", self.env.models), ("dataset", self.env.datasets)):
                if set_name in table:
                    hint = "name this circuit's heads with `as NAME`" if not s.alias else "choose another name"
                    what = f"head set `{set_name}` is already defined" if kind == "head set" else \
                        f"`{set_name}` is already declared as a {kind}; a circuit's head set needs a name of its own"
                    raise SparkError(what, span=span, hint=hint)
            decl = self.env.models[s.model.name.name]
            self.env.sets[set_name] = SetInfo(set_name, models, span, is_diff=base is not None,
                                              series_name=decl.name if decl.series else None)
        self._use(models + ([base] if base else []))
        if dataset not in self.env.circuit_datasets:
            self.env.circuit_datasets.append(dataset)
        self.out.append(RCircuit(
            dataset=dataset, models=models, base=base, params=params, exec=self._exec(opts), set_name=set_name,
            n_examples=self.env.dataset_rows.get(dataset.name), folds=folds, span=s.span,
        ))

    def _folds(self, s: A.CircuitStmt, opts: dict, dataset: DatasetRef, examples: int | None) -> int | None:
        """``with folds = K``: None for 1 or absent (no resampling); K must leave every fold at least
        one pair to hold out, so it is at most the pairs the circuit scores (the dataset's rows, or
        ``examples`` when fewer)."""
        k = opts.get("folds")
        if k is None or k == 1:
            return None
        rows = self.env.dataset_rows.get(dataset.name)
        if rows is None:
            return k
        n = min(rows, examples) if examples else rows
        if k > n:
            opt = next(o for o in s.options if o.key.name == "folds")
            what = f"{n} rows in `{dataset.name}`" if n == rows else f"examples = {n}"
            raise SparkError(f"folds = {k} is more than the pairs this circuit scores ({what})", span=opt.value.span,
                             hint=f"use 2 <= folds <= {n}: each fold holds out at least one pair" if n >= 2 else
                             "resampling needs at least two pairs: drop `folds`, or add pairs to the dataset")
        return k

    # ---- head sets ------------------------------------------------------------------
    def _set_info(self, ref: A.SetRef) -> SetInfo:
        info = self.env.sets.get(ref.name.name)
        if info is None:
            name = ref.name.name
            self._skip_if_broken(name)
            hint = known_names_hint(name, self.env.sets, "head sets")
            if name in self.env.models:
                hint = f"`{name}` is a model; head sets come from `circuit ... as NAME`, `diff` or `heads NAME = ...`"
            raise SparkError(f"unknown head set `{name}`", span=ref.name.span, hint=hint)
        return info

    def _select_instances(self, info: SetInfo, ref: A.SetRef) -> list[ModelRef]:
        if ref.selector is None:
            return []
        if info.domain is None:
            raise SparkError(f"`{info.name}` is a literal set; it has no checkpoints to select", span=ref.selector.span)
        return self._apply_selector(info.domain, ref.selector, info.name, len(info.domain) > 1 or info.series_name is not None)

    def heads_stmt(self, s: A.HeadsStmt) -> None:
        name = s.name.name
        self._no_duplicate(name, s.name.span)
        domains: list[tuple[list[ModelRef], A.SetRef]] = []
        literal_heads: list[A.HeadLit] = []

        for e in setexpr.leaves(s.expr):
            if isinstance(e, A.SetName):
                info = self._set_info(e.ref)
                picked = self._select_instances(info, e.ref)
                dom = picked or info.domain
                if dom is not None:
                    domains.append((dom, e.ref))
            else:
                literal_heads.extend(e.heads)
        depth = setexpr.depth(s.expr)
        if depth > setexpr.MAX_DEPTH:
            raise SparkError(f"this set expression nests {depth} levels of operators; at most {setexpr.MAX_DEPTH} are supported",
                             span=s.expr.span, hint="name inner parts with `heads PART = ...` and combine the names "
                             "(a chain like a | b | c is one level, however long)")
        multi = [(d, r) for d, r in domains if len(d) > 1]
        domain: list[ModelRef] | None
        if multi:
            first_ids = [m.model_id for m in multi[0][0]]
            for d, r in multi[1:]:
                if [m.model_id for m in d] != first_ids:
                    raise SparkError(
                        f"`{r.name.name}` is defined over other checkpoints than `{multi[0][1].name.name}`", span=r.span,
                        hint="per-checkpoint sets combine checkpoint by checkpoint: select matching checkpoints, e.g. NAME[-1]",
                    )
            domain = multi[0][0]
        elif domains:
            domain = domains[0][0]
        else:
            domain = None
        if literal_heads and domain:
            self._check_heads(literal_heads, domain)
        self.env.sets[name] = SetInfo(name, domain, s.name.span,
                                      literal=[(h.layer, h.head) for h in literal_heads] if domain is None else [])
        self.out.append(RHeads(name=name, expr=s.expr, span=s.span))

    def cohort_stmt(self, s: A.CohortStmt) -> None:
        opts = O.check_options(s.options, O.COHORT_OPTIONS, "cohort")
        info = self._set_info(A.SetRef(name=s.set, span=s.set.span))
        if not info.is_diff:
            raise SparkError(f"cohort needs an emergent set from `circuit ... diff ...`; `{info.name}` is not one",
                             span=s.set.span, hint="write: circuit D on series[*] diff base as NAME; cohort NAME")
        reward = opts.get("reward")
        if reward is not None:
            self._check_reward_key(reward, info, next(o for o in s.options if o.key.name == "reward").value.span)
        self.out.append(RCohort(set_name=info.name, reward=reward, span=s.span))

    def _check_reward_key(self, key: str, info: SetInfo, span: Span | None) -> None:
        """The key must be logged by the series' trainer_state.json files (when they can be read now:
        a zoo series is built at run time, and the cohort step checks it then)."""
        decl = self.env.models.get(info.series_name or (info.domain[0].name if info.domain else ""))
        if decl is None or decl.written.startswith("zoo:"):
            return
        if decl.log_keys is None:
            raise SparkError(f'no checkpoint of `{decl.name}` has a trainer_state.json to read "{key}" from',
                             span=span, hint="the reward curve comes from the log_history the HF Trainer (and TRL) "
                                             "writes into every checkpoint")
        if key not in decl.log_keys:
            raise SparkError(f'the checkpoints of `{decl.name}` log no "{key}"', span=span,
                             hint=known_names_hint(key, decl.log_keys, "logged keys"))

    def intervene_stmt(self, s: A.AblateStmt | A.ScaleStmt) -> None:
        op = "ablate" if isinstance(s, A.AblateStmt) else "scale"
        src = s.source
        opts = O.check_options(s.options, O.CONTROL_OPTIONS, op)
        if not src.random:
            opt = next((o for o in s.options if o.key.name in O.CONTROL_OPTIONS), None)
            if opt is not None:
                raise SparkError(f"`{opt.key.name}` is an option of random controls, and this {op} edits chosen heads",
                                 span=opt.span, hint=f"remove it, or draw controls: {op} random K ... / "
                                                     f"{op} random matching SET ...")
        factor = 0.0
        if isinstance(s, A.ScaleStmt):
            factor = float(s.factor.value)
            if abs(factor) > O.MAX_SCALE:
                raise SparkError(f"scale factor {s.factor.text} is out of range (|factor| <= {O.bound_text(O.MAX_SCALE)})",
                                 span=s.factor.span, hint="activations scaled further overflow every dtype")
        targets = self.select(s.target) if s.target else None
        if src.set is not None:
            info = self._set_info(src.set)
            picked = self._select_instances(info, src.set)
            source = SetSource(kind="set", name=info.name, models=picked, span=src.span)
            if targets is None:
                if info.domain is None:
                    raise SparkError(f"`{info.name}` is a literal set: say which model to edit", span=s.span,
                                     hint="add `on MODEL`")
                targets = picked or info.domain
            if info.domain is None and targets:
                self._check_heads([A.HeadLit(layer=l, head=h) for l, h in info.literal], targets)
        elif src.random:
            if targets is None:
                raise SparkError("random heads need a model to edit", span=s.span, hint="add `on MODEL`, e.g. on base")
            source = SetSource(kind="literal", heads=[], span=src.span)
        else:
            if targets is None:
                raise SparkError("literal heads need a model to edit", span=s.span, hint="add `on MODEL`, e.g. on base")
            self._check_heads(src.heads, targets)
            source = SetSource(kind="literal", heads=[(h.layer, h.head) for h in src.heads], span=src.span)
        if src.top is not None and src.top < 1:
            raise SparkError("top K needs K >= 1", span=src.span)
        if src.top is not None:
            self._top_fits(src, targets)
        control = None
        if src.random:
            control = self._control(src, opts, targets)
        from sparkql.lang.fmt import fmt_statement

        label = s.alias.name if s.alias else fmt_statement(s.model_copy(update={"target": None, "alias": None, "options": []}))
        if any(v.label == label for v in self.env.variants):
            raise SparkError(f"variant `{label}` is declared twice", span=s.span, hint="name one with `as NAME`")
        if s.alias:
            self._no_duplicate(s.alias.name, s.alias.span)
        self._use(targets)
        stmt = RIntervene(op=op, factor=factor, label=label, source=source, top_k=src.top, targets=targets,
                          control=control, span=s.span)
        self.env.variants.append(VariantInfo(label, s.alias.name if s.alias else None, targets, stmt.draw_labels()))
        self.out.append(stmt)

    def _top_fits(self, src: A.HeadSource, targets: list[ModelRef]) -> None:
        """`top K` beyond every head of the model can only select fewer than K: say so now (a set
        smaller than K is known at run time only; the run summary says so then)."""
        for ref in targets:
            shape = self._shape_of(ref)
            if shape is not None and src.top > shape.n_layers * shape.n_heads:
                self._warn(f"top {src.top}: {ref.name} has only {shape.n_layers * shape.n_heads} query heads, so "
                           f"this selects at most {shape.n_layers * shape.n_heads}", src.span,
                           hint="lower K (the run summary lists the heads each variant edited)")
                return

    def _control(self, src: A.HeadSource, opts: dict, targets: list[ModelRef]) -> RControl:
        """Check a random control against the edited models' shapes (when known now)."""
        if src.count is not None and src.count < 1:
            raise SparkError("random K needs K >= 1", span=src.span)
        for ref in targets:
            shape = self._shape_of(ref)
            if shape is None:
                continue
            total = shape.n_layers * shape.n_heads
            if src.count is not None and src.count > total:
                raise SparkError(f"random {src.count}: {ref.name} has only {total} query heads "
                                 f"({shape.n_layers} layers x {shape.n_heads})", span=src.span,
                                 hint=f"draw at most {total} heads")
            if src.count is not None and src.count == total:
                self._warn(f"random {src.count} draws every head of {ref.name}: all draws are the same", src.span,
                           hint="draw fewer heads")
        return RControl(draws=self._get("seeds", opts, O.CONTROL_OPTIONS), seed=self._get("seed", opts),
                        count=src.count, matches=src.set.name.name if src.set is not None else None)

    # ---- eval -----------------------------------------------------------------------
    def eval_stmt(self, s: A.EvalStmt) -> None:
        if s.metric is not None and s.metric.name not in O.METRICS:
            raise SparkError(f"unknown metric `{s.metric.name}`", span=s.metric.span,
                             hint="pass@k (which also reports success@k and accuracy)")
        opts = O.check_options(s.options, O.EVAL_WITH, "eval")
        if s.datasets:
            datasets = [self.dataset(d) for d in s.datasets]
            for d, ident in zip(datasets, s.datasets):
                missing = [r for r in ("problem", "answer") if r not in d.roles]
                if missing:
                    raise SparkError(f"dataset `{d.name}` has no {' or '.join(missing)} role, which eval needs",
                                     span=ident.span, hint=f'map it: dataset {d.name} = "..." (problem = "...", answer = "...")')
        else:
            datasets = [d for d in self.env.circuit_datasets if "problem" in d.roles and "answer" in d.roles]
            if not datasets:
                raise SparkError("eval has no dataset to evaluate on", span=s.span,
                                 hint="name one: eval pass@k on aime24 (circuit pair datasets have no answers to grade)")
        targets: list[EvalTarget] = []
        if s.targets:
            for t in s.targets:
                variant = next((v for v in self.env.variants if v.alias == t.name.name), None)
                if variant is not None:
                    refs = self._apply_selector(variant.targets, t.selector, t.name.name, len(variant.targets) > 1)
                    targets += [EvalTarget(model=r, variant=lab) for lab in variant.labels for r in refs]
                    continue
                if t.name.name not in self.env.models:
                    self._skip_if_broken(t.name.name)
                    pool = list(self.env.models) + [v.alias for v in self.env.variants if v.alias]
                    raise SparkError(f"unknown model or variant `{t.name.name}`", span=t.name.span,
                                     hint=known_names_hint(t.name.name, pool, "models and named variants"))
                targets += [EvalTarget(model=r) for r in self.select(t)]
        else:
            intact = self.env.used_models or [r for d in self.env.models.values() for r in d.refs]
            targets = [EvalTarget(model=r) for r in intact]
            targets += [EvalTarget(model=r, variant=lab) for v in self.env.variants for lab in v.labels for r in v.targets]
        n = self._get("n", opts, O.EVAL_OPTIONS)
        ks = self._get("k", opts, O.EVAL_OPTIONS)
        if ks is None:
            ks = sorted({2 ** i for i in range(n.bit_length()) if 2 ** i <= n} | {n})
        elif max(ks) > n:
            opt = next((o for o in s.options if o.key.name == "k"), None)
            raise SparkError(f"k = {max(ks)} is larger than n = {n} samples per problem",
                             span=opt.value.span if opt else s.span, hint="pass@k needs k <= n: raise n or lower k")
        self._within_context("max_tokens", s, [t.model for t in targets])
        sampling = SamplingParams(
            n=n,
            temperature=float(self._get("temperature", opts, O.EVAL_OPTIONS)),
            top_p=float(self._get("top_p", opts, O.EVAL_OPTIONS)),
            top_k=self._get("top_k", opts, O.EVAL_OPTIONS),
            min_p=float(self._get("min_p", opts, O.EVAL_OPTIONS)),
            max_tokens=self._get("max_tokens", opts, O.EVAL_OPTIONS),
            seed=self._get("seed", opts),
        )
        if (self._get("backend", opts) or "auto") == "vllm" and sampling.temperature > 2.0:
            opt = next((o for o in s.options if o.key.name == "temperature"), None)
            raise SparkError(f"backend vllm samples at temperatures up to 2, not {sampling.temperature:g}",
                             span=opt.value.span if opt else s.span,
                             hint="lower the temperature, or use backend = transformers (auto picks it for such an eval)")
        self.out.append(REval(
            datasets=datasets, targets=targets, sampling=sampling, ks=ks,
            think=opts.get("think", self.env.think), system=self._get("system", opts),
            instruction=self._get("instruction", opts, O.EVAL_OPTIONS), examples=self._get("examples", opts, O.EVAL_OPTIONS),
            # resolved before keying, as circuits are: an fp32 CPU eval is not a bf16 GPU eval
            dtype=concrete_dtype(self._dtype(opts, [t.model for t in targets]), self._get("device", opts) or "auto"),
            exec=self._exec(opts),
            n_problems={d.name: self.env.dataset_rows.get(d.name, 0) for d in datasets}, span=s.span,
            extract={d.name: self._extract(d.name, opts) for d in datasets},
        ))

    def _extract(self, dataset: str, opts: dict) -> str:
        """The eval's own ``extract``, else the dataset's, else the latest ``set``, else strict."""
        if "extract" in opts:
            return opts["extract"]
        if dataset in self.env.dataset_extract:
            return self.env.dataset_extract[dataset]
        return self._get("extract", {}, O.EVAL_OPTIONS)

    # ---- driver ---------------------------------------------------------------------
    def _skip_if_broken(self, name: str) -> None:
        """A name whose declaration already failed: the statement using it is skipped quietly
        (its "unknown name" would only repeat the first error)."""
        if name in self.broken:
            raise _Skipped(name)

    def _declared_names(self, stmt) -> list[str]:
        if isinstance(stmt, (A.ModelStmt, A.DatasetStmt, A.HeadsStmt)):
            return [stmt.name.name]
        if isinstance(stmt, A.CircuitStmt):
            return [stmt.alias.name] if stmt.alias else (["emergent"] if stmt.diff else [])
        if isinstance(stmt, (A.AblateStmt, A.ScaleStmt)):
            return [stmt.alias.name] if stmt.alias else []
        return []

    def run(self, tree: A.StudyAst) -> Study:
        """Resolve every statement; a statement that fails is reported and the next one resolved
        (a SparkErrors of all independent mistakes), names it declared count as broken."""
        handlers = {
            "model": self.model_stmt, "dataset": self.dataset_stmt, "set": self.set_stmt, "think": self.think_stmt,
            "circuit": self.circuit_stmt, "heads": self.heads_stmt, "cohort": self.cohort_stmt,
            "ablate": self.intervene_stmt, "scale": self.intervene_stmt, "eval": self.eval_stmt,
        }
        errors: list[SparkError] = []
        for stmt in tree.statements:
            try:
                handlers[stmt.stmt](stmt)
            except (SparkError, _Skipped) as e:
                if isinstance(e, SparkError):
                    errors.append(e)
                self.broken.update(n for n in self._declared_names(stmt) if n not in self._known())
        if errors:
            raise SparkErrors.of(errors)
        return Study(file=self.file, models=self.env.models, datasets=self.env.datasets, statements=self.out,
                     warnings=self.env.warnings,
                     backend=self.env.settings.get("backend", "auto"))

    def _known(self) -> set[str]:
        return set(self.env.models) | set(self.env.datasets) | set(self.env.sets) | \
            {v.alias for v in self.env.variants if v.alias}


class _Skipped(Exception):
    """A statement that refers to a name whose declaration failed."""


def _count_rows(path: Path, fmt: str) -> int:
    if fmt in ("jsonl", "csv"):
        with path.open("rb") as f:
            n = sum(1 for line in f if line.strip())
        return n - 1 if fmt == "csv" else n
    return 0


def resolve(tree: A.StudyAst, file: str = "<study>", study_dir: Path | None = None) -> Study:
    return Resolver(file, study_dir).run(tree)
