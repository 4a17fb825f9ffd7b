"""What the compiler checks about the checkpoints a `model` statement names, beyond finding them
(sparkql.lang.paths): the base model of each PEFT adapter checkpoint, and the training logs of a
series (leftovers of an earlier run, checkpoints without trainer_state.json).

An adapter checkpoint (adapter_config.json and adapter weights, no config.json) is loaded as the
adapter merged into its base: ``with base = NAME`` (a declared model, or a "path"), else the
``base_model_name_or_path`` adapter_config.json names, found like any model path (next to the
study, in the current directory, or in the local Hugging Face cache). Its fingerprint hashes the
adapter's files (adapter_config.json, the adapter weights' names, sizes and mtimes) with the base's
fingerprint: together they determine the merged weights, and nothing has to be loaded or merged at
check time to compute it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sparkql.errors import Span, SparkError
from sparkql.lang import ast as A
from sparkql.lang.paths import FoundModel, find_models
from sparkql.plan.steps import ModelShape


@dataclass(frozen=True)
class Base:
    path: str
    """Absolute directory, or a ``zoo:`` path."""
    fingerprint: str
    config: dict | None
    shape: ModelShape | None


def adapter_fingerprint(adapter_fp: str, base_fp: str) -> str:
    return hashlib.sha256(f"adapter\0{adapter_fp}\0{base_fp}".encode()).hexdigest()[:16]


def _plural(names: list[str], one: str, many: str) -> str:
    return one if len(names) == 1 else many


def _shown(names: list[str], at_most: int = 6) -> str:
    return ", ".join(names[:at_most]) + (f" and {len(names) - at_most} more" if len(names) > at_most else "")


class AdapterBases:
    """Finds the base of each adapter checkpoint of one `model` statement (each distinct base once)."""

    def __init__(self, stmt: A.ModelStmt, declared: dict, study_dir: Path | None, base_opt, shape_of):
        self.stmt = stmt
        self.declared = declared
        """name -> ModelDecl of the models declared before this statement."""
        self.study_dir = study_dir
        self.base_opt = base_opt
        """The ``with base = ...`` value (an A.Word or A.String), or None."""
        self.shape_of = shape_of
        """config dict, where, span -> ModelShape (the resolver's checked reader)."""
        self._found: dict[str, Base] = {}

    def for_member(self, f: FoundModel) -> Base:
        if self.base_opt is not None:
            key = "\0opt"
            if key not in self._found:
                self._found[key] = self._from_option(self.base_opt)
            return self._found[key]
        written = f.adapter_base
        member = Path(f.path).name
        if not written:
            raise SparkError(f"{member} is a PEFT adapter whose adapter_config.json names no base model",
                             span=self.stmt.path.span, hint=self._declare_hint())
        if written not in self._found:
            self._found[written] = self._from_adapter_config(written, member)
        return self._found[written]

    def _declare_hint(self) -> str:
        return (f'declare the base model and name it: model base = "PATH"; '
                f'model {self.stmt.name.name} = "{self.stmt.path.value}" with base = base')

    def _single(self, found: list[FoundModel], written: str, span: Span | None) -> Base:
        if len(found) != 1:
            raise SparkError(f'the base model "{written}" is a series of {len(found)} checkpoints', span=span,
                             hint="an adapter is merged into one model: name a single directory")
        b = found[0]
        if b.adapter:
            raise SparkError(f'the base model "{written}" is itself an adapter', span=span,
                             hint="name the full model the adapter was trained on")
        shape = self.shape_of(b.config, written, span) if b.config is not None else None
        return Base(b.path, b.fingerprint, b.config, shape)

    def _from_option(self, v) -> Base:
        if isinstance(v, A.Word):
            decl = self.declared.get(v.value)
            if decl is None:
                from sparkql.errors import known_names_hint

                raise SparkError(f"unknown model `{v.value}`", span=v.span,
                                 hint=known_names_hint(v.value, self.declared, "models") + '; or give a "path"')
            if decl.series:
                raise SparkError(f"`{v.value}` is a series; an adapter's base is one model", span=v.span,
                                 hint="declare the base model on its own: model base = \"PATH\"")
            ref = decl.refs[0]
            if ref.base is not None:
                raise SparkError(f"`{v.value}` is itself an adapter", span=v.span,
                                 hint="name the full model the adapter was trained on")
            return Base(ref.path, ref.fingerprint, None, decl.shape)
        return self._single(find_models(v.value, v.span, self.study_dir), v.value, v.span)

    def _from_adapter_config(self, written: str, member: str) -> Base:
        span = self.stmt.path.span
        try:
            found = find_models(written, span, self.study_dir)
        except SparkError as e:
            raise SparkError(
                f'{member} is a PEFT adapter of "{written}" (adapter_config.json), which sparkql cannot find: {e.message}',
                span=span, hint=self._declare_hint()) from None
        return self._single(found, written, span)


def check_series_log(name: str, found: list[FoundModel], span: Span | None, strict: bool,
                     warn) -> set[str] | None:
    """Leftovers and missing trainer_state.json of a series (warn, or SparkError when strict);
    returns the numeric keys its logs hold (None: no trainer_state.json at all)."""
    from sparkql.runtime.models.checkpoint import series_log

    report = series_log([(Path(f.path).name, Path(f.path)) for f in found])
    hint_strict = "" if strict else "; `with series = strict` refuses such a series"
    if report.foreign:
        msg = (f"`{name}` mixes runs: {_shown(report.foreign)} "
               f"{_plural(report.foreign, 'does', 'do')} not belong to the run of {report.reference} "
               f"(a checkpoint's trainer_state.json log_history must extend the earlier checkpoints' logs)")
        hint = ("leftovers of an earlier run in the same output_dir? HF Trainer and TRL never clear it: delete "
                f"{_plural(report.foreign, 'it', 'them')} or narrow the glob{hint_strict}")
        if strict:
            raise SparkError(msg, span=span, hint=hint)
        warn(msg, span, hint)
    if report.missing:
        msg = (f"`{name}`: {_shown(report.missing)} {_plural(report.missing, 'has', 'have')} no trainer_state.json, "
               f"so {_plural(report.missing, 'its', 'their')} reward is unknown (NULL) unless a later checkpoint's "
               f"log covers {_plural(report.missing, 'its step', 'their steps')}")
        hint = "a checkpoint still being written? the Trainer writes trainer_state.json last" + hint_strict
        if strict:
            raise SparkError(msg, span=span, hint=hint)
        warn(msg, span, hint)
    return report.keys
