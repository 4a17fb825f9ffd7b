"""User-facing errors.

Every mistake a user can make (bad study text, unknown name, missing file,
unsupported architecture, out of memory, a busy results store) is raised as a
:class:`SparkError`. The CLI prints :meth:`SparkError.render` and exits with
code 2, never a traceback. A SparkError knows *where* the mistake is (a
:class:`Span` into the study text) when there is such a place, and a *hint*
that says what to do about it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """A region of study text. Lines and columns are 1-based; ``end_*`` is exclusive."""

    model_config = ConfigDict(frozen=True)

    line: int
    column: int
    end_line: int
    end_column: int
    start_pos: int = 0
    """Character offset of the start (0-based), for slicing the source."""
    end_pos: int = 0
    """Character offset one past the end."""


_SHOWN = 120
"""Characters of a source line shown under an error at most."""


@dataclass
class SparkError(Exception):
    """A mistake the user can fix. Rendered as ``file:line:col: message``, the
    source line, a caret under the span, and a hint."""

    message: str
    span: Span | None = None
    hint: str | None = None
    file: str | None = None
    source: str | None = None
    level: str = "error"
    """``error``, or ``warning`` for something a study may do but probably did not mean
    (``sparkql check`` prints warnings and still succeeds)."""

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:  # pragma: no cover - exercised through render
        return self.render()

    def with_source(self, file: str | None, source: str | None) -> "SparkError":
        """Attach the study's file name and text (once known), keeping any already set."""
        if self.file is None:
            self.file = file
        if self.source is None:
            self.source = source
        return self

    def location(self) -> str:
        where = self.file or "<study>"
        if self.span is None:
            return where
        return f"{where}:{self.span.line}:{self.span.column}"

    def render(self) -> str:
        # Errors that are not about study text (a busy store, a missing eval) have no location.
        where = f"{self.location()}: " if (self.file or self.span) else ""
        lines = [f"{where}{self.level}: {self.message}"]
        if self.span is not None and self.source is not None:
            src_lines = self.source.splitlines() or [""]
            idx = self.span.line - 1
            if 0 <= idx < len(src_lines):
                text = src_lines[idx].rstrip("\n").expandtabs(1)
                start = max(self.span.column - 1, 0)
                if self.span.end_line == self.span.line:
                    width = max(self.span.end_column - self.span.column, 1)
                else:
                    width = max(len(text) - start, 1)
                if len(text) > _SHOWN:  # a generated line of thousands of characters: a window on the span
                    lo = max(0, min(start - 20, len(text) - _SHOWN))
                    hi = lo + _SHOWN
                    width = max(min(width, hi - start), 1)
                    text = ("..." if lo else "") + text[lo:hi] + ("..." if hi < len(text) else "")
                    start = start - lo + (3 if lo else 0)
                lines.append(f"  {text}")
                lines.append("  " + " " * start + "^" * width)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


@dataclass
class SparkErrors(SparkError):
    """Several independent mistakes in one file (``sparkql check`` reports them all, each with
    its caret). Raised only for two or more: one mistake is raised as itself."""

    errors: list[SparkError] = field(default_factory=list)

    @classmethod
    def of(cls, errors: list[SparkError]) -> SparkError:
        """The single error itself, or a group of several."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        return cls(message=f"{first.message} (and {len(errors) - 1} more error(s))", file=first.file,
                   source=first.source, errors=list(errors))

    def with_source(self, file: str | None, source: str | None) -> "SparkError":
        for e in self.errors:
            e.with_source(file, source)
        return super().with_source(file, source)

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors) + f"\n{len(self.errors)} errors"


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean X?' hint for a misspelled name, or None when nothing is close."""
    pool = sorted(set(candidates))
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return None


def known_names_hint(word: str, candidates: Iterable[str], what: str) -> str:
    """did-you-mean when one fits, else the list of known names."""
    pool = sorted(set(candidates))
    guess = did_you_mean(word, pool)
    if guess:
        return guess
    if not pool:
        return f"no {what} is declared yet"
    shown = ", ".join(pool[:12]) + (", ..." if len(pool) > 12 else "")
    return f"known {what}: {shown}"
