"""Study -> Plan: typed steps with content-addressed keys, shared when identical.

Compilation is a pure function of the resolved study: the same study over the
same files gives the same keys, in this run and the next, so finished steps
are recognised in the results store and never recomputed.
"""

from __future__ import annotations

from pathlib import Path

from sparkql.errors import SparkError
from sparkql.lang import ast as A
from sparkql.lang import setexpr
from sparkql.lang.parser import parse
from sparkql.lang.resolve import resolve
from sparkql.lang.study import RCircuit, RCohort, REval, RHeads, RIntervene, Study
from sparkql.plan.steps import (
    AggregateSpec, CircuitSpec, CohortMember, CohortSpec, Cost, EdgeScoresSpec, ExecOptions, Fold, FoldHeadsSpec,
    GenerateSpec, GradeSpec, HeadExpr, HeadSetSpec, InterveneSpec, LoadModelSpec, ModelRef, Plan, RandomDraw, Step,
    step_key,
)


class _Builder:
    def __init__(self, study: Study):
        self.study = study
        self.steps: dict[str, Step] = {}
        self.loaded: dict[str, str] = {}
        # set name -> {model_id: step key of that model's instance}; literal sets -> heads
        self.set_keys: dict[str, dict[str, str]] = {}
        self.set_models: dict[str, list[ModelRef]] = {}
        self.set_literals: dict[str, list[tuple[int, int]]] = {}
        self.circuit_of: dict[tuple[str, str], str] = {}   # (set name, model_id) -> circuit key
        self.base_circuit_of: dict[str, str] = {}            # diff set name -> base circuit key
        self.variant_keys: dict[tuple[str, str], str] = {}  # (variant label, model_id) -> intervene key

    def add(self, kind: str, spec, label: str, deps: list[str], span, exec: ExecOptions | None = None,
            cost: Cost | None = None) -> str:
        key = step_key(kind, spec)
        if key not in self.steps:
            self.steps[key] = Step(key=key, kind=kind, label=label, deps=list(dict.fromkeys(deps)), spec=spec,
                                   exec=exec or ExecOptions(), cost=cost or Cost(), span=span)
        return key

    def load(self, ref: ModelRef, span) -> str:
        if ref.model_id not in self.loaded:
            self.loaded[ref.model_id] = self.add(
                "load_model", LoadModelSpec(model=ref, dtype="auto"), f"load {ref.label}", [], span)
        return self.loaded[ref.model_id]

    # ---- circuits --------------------------------------------------------------------
    def circuit(self, c: RCircuit, ref: ModelRef) -> str:
        """Two steps: the edge scores (keyed by what changes them) and the circuit selected from
        them (top_n, tau), so a study that changes only the selection reuses the scores."""
        n = min(c.n_examples or 0, c.params.examples or (c.n_examples or 0))
        load = self.load(ref, c.span)
        scoring = EdgeScoresSpec(model=ref, dataset=c.dataset, params=c.params.scoring())
        sk = self.add("edge_scores", scoring, f"edge scores {c.dataset.name} on {ref.label}", [load], c.span,
                      c.exec, Cost(forward_backward=n * c.params.ig_steps, forward=2 * n))
        spec = CircuitSpec(model=ref, dataset=c.dataset, params=c.params, scores_key=sk)
        # faithfulness: a clean, a corrupted and a patched forward per example
        return self.add("circuit", spec, f"circuit {c.dataset.name} on {ref.label}", [sk, load], c.span, c.exec,
                        Cost(forward=3 * n))

    def fold_scorings(self, c: RCircuit, ref: ModelRef) -> list[str]:
        """``with folds = K``: one scoring per leave-one-fold-out sample of the pairs, each keyed (and
        cached) like any scoring, so changing top_n or tau recomputes none of them."""
        if not c.folds:
            return []
        n = min(c.n_examples or 0, c.params.examples or (c.n_examples or 0))
        kept = n - n // c.folds  # pairs outside a fold (the largest folds hold ceil(n / K))
        load = self.load(ref, c.span)
        keys = []
        for i in range(c.folds):
            spec = EdgeScoresSpec(model=ref, dataset=c.dataset, params=c.params.scoring(),
                                  fold=Fold(k=c.folds, index=i))
            label = f"edge scores {c.dataset.name} on {ref.label}, fold {i + 1}/{c.folds} left out"
            keys.append(self.add("edge_scores", spec, label, [load], c.span, c.exec,
                                 Cost(forward_backward=kept * c.params.ig_steps, forward=2 * kept)))
        return keys

    def fold_heads(self, c: RCircuit, ref: ModelRef, ck: str, base: tuple[ModelRef, str, list[str]] | None = None,
                   set_key: str | None = None) -> None:
        """The step that selects from each fold's scores and stores each head's frequency over folds."""
        folds = self.fold_scorings(c, ref)
        if not folds:
            return
        spec = FoldHeadsSpec(model=ref, top_n=c.params.top_n, tau=c.params.tau, scores_keys=folds, circuit_key=ck,
                             set_name=c.set_name if set_key else None, set_key=set_key)
        deps = [*folds, ck]
        what = f"circuit {c.dataset.name} on {ref.label}"
        if base is not None:
            bref, bck, bfolds = base
            spec = spec.model_copy(update={"base": bref, "base_scores_keys": bfolds, "base_circuit_key": bck})
            deps += [*bfolds, bck]
            what = f"{c.set_name}: {ref.label} - {bref.label}"
        self.add("fold_heads", spec, f"fold stability {what} ({c.folds} folds)", deps, c.span)

    def circuit_stmt(self, c: RCircuit) -> None:
        base_key = self.circuit(c, c.base) if c.base else None
        if base_key:
            self.fold_heads(c, c.base, base_key)
        if c.set_name:
            self.set_keys[c.set_name] = {}
            self.set_models[c.set_name] = list(c.models)
        for ref in c.models:
            ck = self.circuit(c, ref)
            key = None
            if c.set_name:
                self.circuit_of[(c.set_name, ref.model_id)] = ck
                if base_key:
                    expr = HeadExpr(op="minus", args=[HeadExpr(op="circuit", ref=ck), HeadExpr(op="circuit", ref=base_key)])
                    spec = HeadSetSpec(kind="diff", name=c.set_name, model=ref, expr=expr)
                    label = f"diff {c.set_name}: {ref.label} - {c.base.label}"
                    key = self.add("diff", spec, label, [ck, base_key], c.span)
                else:
                    spec = HeadSetSpec(kind="heads", name=c.set_name, model=ref, expr=HeadExpr(op="circuit", ref=ck))
                    key = self.add("heads", spec, f"heads {c.set_name} of {ref.label}", [ck], c.span)
                self.set_keys[c.set_name][ref.model_id] = key
            base = (c.base, base_key, self.fold_scorings(c, c.base)) if base_key else None
            self.fold_heads(c, ref, ck, base, key)
        if base_key and c.set_name:
            self.base_circuit_of[c.set_name] = base_key

    # ---- head sets -------------------------------------------------------------------
    def _instances(self, name: str, models: list[ModelRef]) -> list[str]:
        keys = self.set_keys[name]
        return [keys[m.model_id] for m in models if m.model_id in keys]

    def operand(self, name: str, model: ModelRef | None, picked: list[ModelRef]) -> HeadExpr:
        """The expression for set ``name`` as seen from ``model``: its own instance when it has one,
        the picked instances (selector), else the union over all instances (broadcast)."""
        if name in self.set_literals:
            return HeadExpr(op="literal", heads=self.set_literals[name])
        keys = self.set_keys[name]
        if picked:
            refs = self._instances(name, picked)
        elif model is not None and model.model_id in keys:
            refs = [keys[model.model_id]]
        else:
            refs = list(keys.values())
        if len(refs) == 1:
            return HeadExpr(op="set", ref=refs[0])
        return HeadExpr(op="union", args=[HeadExpr(op="set", ref=r) for r in refs])

    def expr(self, e, model: ModelRef | None, deps: list[str]) -> HeadExpr:
        """The plan's form of set expression ``e`` as seen from ``model``: chains of one operator
        become one n-ary node (sparkql.lang.setexpr), so `a | b | ... ` of any length is one level."""

        def leaf(x) -> HeadExpr:
            if isinstance(x, A.SetLiteral):
                return HeadExpr(op="literal", heads=[(h.layer, h.head) for h in x.heads])
            he = self.operand(x.ref.name.name, model, self._picked(x.ref))
            deps.extend(_refs(he))
            return he

        return setexpr.fold(e, leaf, lambda node, args: HeadExpr(op=node.op, args=args))

    def _picked(self, ref: A.SetRef) -> list[ModelRef]:
        if ref.selector is None:
            return []
        models = self.set_models.get(ref.name.name, [])
        s = ref.selector
        if s.kind == "all":
            return models
        if s.kind == "index":
            return [models[s.index]]
        if s.kind == "slice":
            return models[s.start:s.stop]
        return [m for m in models if m.step == s.step]

    def heads_stmt(self, h: RHeads) -> None:
        domain = self._domain(h.expr)
        if domain is None:
            self.set_literals[h.name] = self._literal_heads(h.expr)
            return
        self.set_keys[h.name] = {}
        self.set_models[h.name] = domain
        for ref in domain:
            deps: list[str] = []
            expr = self.expr(h.expr, ref, deps)
            spec = HeadSetSpec(kind="heads", name=h.name, model=ref, expr=expr)
            self.set_keys[h.name][ref.model_id] = self.add("heads", spec, f"heads {h.name} of {ref.label}", deps, h.span)

    def _domain(self, e) -> list[ModelRef] | None:
        names: list[tuple[str, list[ModelRef]]] = []
        for x in setexpr.leaves(e):
            if isinstance(x, A.SetName):
                n = x.ref.name.name
                if n not in self.set_literals:
                    names.append((n, self._picked(x.ref) or self.set_models[n]))
        if not names:
            return None
        multi = [m for _, m in names if len(m) > 1]
        return multi[0] if multi else names[0][1]

    def _literal_heads(self, e) -> list[tuple[int, int]]:
        """The heads of a model-free expression (literal sets, and names of literal sets)."""

        def leaf(x) -> set[tuple[int, int]]:
            if isinstance(x, A.SetLiteral):
                return {(h.layer, h.head) for h in x.heads}
            return set(self.set_literals.get(x.ref.name.name, []))

        def group(node, parts: list[set]) -> set:
            first, rest = parts[0], parts[1:]
            if node.op == "union":
                return first.union(*rest)
            if node.op == "intersect":
                return first.intersection(*rest)
            return first.difference(*rest)

        return sorted(setexpr.fold(e, leaf, group))

    # ---- cohorts, interventions, evals -------------------------------------------------
    def cohort_stmt(self, c: RCohort) -> None:
        name = c.set_name
        members = [
            CohortMember(model=m, set_key=self.set_keys[name][m.model_id], circuit_key=self.circuit_of[(name, m.model_id)])
            for m in sorted(self.set_models[name], key=lambda m: (m.step is None, m.step or 0))
        ]
        base_key = self.base_circuit_of[name]
        base = self.steps[base_key].spec.model
        spec = CohortSpec(name=name, series=members, base=base, base_circuit_key=base_key, reward=c.reward)
        deps = [m.set_key for m in members] + [m.circuit_key for m in members] + [base_key]
        label = f"cohort {name} ({len(members)} checkpoints" + (f", reward {c.reward})" if c.reward else ")")
        self.add("cohort", spec, label, deps, c.span)

    def intervene_stmt(self, v: RIntervene) -> None:
        for target in v.targets or []:
            if v.source.kind == "literal":
                heads = HeadExpr(op="literal", heads=v.source.heads)
                deps: list[str] = []
            else:
                heads = self.operand(v.source.name, target, list(v.source.models))
                deps = _refs(heads)
            for i, label in enumerate(v.draw_labels()):
                draw = None
                if v.control is not None:
                    c = v.control
                    draw = RandomDraw(group=v.label, draw=i, seed=c.seed, count=c.count, matches=c.matches)
                spec = InterveneSpec(variant=label, model=target, op=v.op, factor=v.factor, heads=heads, top_k=v.top_k,
                                     random=draw)
                key = self.add("intervene", spec, f"{label} @ {target.label}", deps + [self.load(target, v.span)], v.span)
                self.variant_keys[(label, target.model_id)] = key

    def eval_stmt(self, e: REval) -> None:
        for ds in e.datasets:
            n_problems = e.n_problems.get(ds.name, 0)
            if e.examples:
                n_problems = min(n_problems, e.examples)
            for t in e.targets:
                vkey = self.variant_keys.get((t.variant, t.model.model_id)) if t.variant else None
                gen = GenerateSpec(
                    model=t.model, variant_key=vkey, variant=t.variant or "intact", dataset=ds, sampling=e.sampling,
                    think=e.think, system=e.system, instruction=e.instruction, examples=e.examples, dtype=e.dtype,
                )
                who = t.model.label + (f" [{t.variant}]" if t.variant else "")
                deps = [self.load(t.model, e.span)] + ([vkey] if vkey else [])
                cost = Cost(tokens=n_problems * e.sampling.n * e.sampling.max_tokens)
                gk = self.add("generate", gen, f"generate {ds.name} with {who}", deps, e.span, e.exec, cost)
                grade = GradeSpec(generate_key=gk, grader=ds.grader, think=e.think, seed=e.sampling.seed,
                                  extract=e.extract.get(ds.name, "strict"))
                rk = self.add("grade", grade, f"grade {ds.name} of {who}", [gk], e.span)
                agg = AggregateSpec(generate_key=gk, grade_key=rk, ks=e.ks, seed=e.sampling.seed)
                self.add("aggregate", agg, f"pass@k {ds.name} of {who}", [gk, rk], e.span)

    def build(self) -> Plan:
        for stmt in self.study.statements:
            getattr(self, f"{stmt.kind}_stmt")(stmt)
        return Plan(study=self.study.file, steps=list(self.steps.values()), backend=self.study.backend,
                    warnings=[_render(n, self.study.file) for n in self.study.warnings])


def _render(note, file: str, source: str | None = None) -> str:
    return SparkError(note.message, span=note.span, hint=note.hint, file=file, source=source, level="warning").render()


def _refs(e: HeadExpr) -> list[str]:
    """Step keys an expression reads, left to right (no recursion: see sparkql.lang.setexpr)."""
    out, stack = [], [e]
    while stack:
        x = stack.pop()
        if x.ref:
            out.append(x.ref)
        stack.extend(reversed(x.args))
    return out


def compile_study(study: Study) -> Plan:
    return _Builder(study).build()


def compile_text(text: str, file: str | None = None, study_dir: Path | None = None) -> Plan:
    """Parse, resolve and compile study text; every user mistake is a SparkError with the source attached."""
    name = file or "<study>"
    try:
        tree = parse(text, name)
        study = resolve(tree, name, study_dir)
        plan = compile_study(study)
        if study.warnings:  # rendered again with the study text: the line and a caret
            plan = plan.model_copy(update={"warnings": [_render(n, name, text) for n in study.warnings]})
        return plan
    except SparkError as e:
        raise e.with_source(name, text) from None


def read_study(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise SparkError(f"study file {path} does not exist", hint="give the path of a .spark file")
    try:
        return p.read_text(encoding="utf-8-sig")  # a byte order mark (some Windows editors) is not text
    except UnicodeDecodeError:
        raise SparkError(f"study file {path} is not UTF-8 text") from None


def compile_file(path: str | Path) -> Plan:
    p = Path(path)
    return compile_text(read_study(p), str(path), p.resolve().parent)
