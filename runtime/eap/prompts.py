"""Clean/corrupted prompt pairs for circuit discovery (the README's language reference, ``circuit`` options).

* Pair datasets (a ``clean`` role): the clean and corrupt texts are used
  verbatim (no chat template, no answer opening).
* Problem datasets (a ``problem`` role): the problem in the model's chat
  template (:func:`sparkql.runtime.generation.prompting.render_prompt`, thinking on/off),
  followed by the answer opening: ``params.prefix`` text, or with
  ``params.prefix_sample = N`` the model's own greedy opening of N tokens
  (generated from the clean prompt and appended, as token ids, to both prompts).
* Corruption: ``pairs`` (the dataset's ``corrupt`` field, rendered like the
  clean problem for problem datasets), ``digits`` (every digit of the problem
  redrawn, to a different digit, by an RNG seeded from ``params.seed`` and the
  row), ``shuffle`` (another problem whose prompt has the same token length,
  drawn by a seeded RNG).
* ``max_tokens`` keeps the LAST max_tokens tokens of both prompts (the metric
  is read at the last position, so the answer opening must survive).
* A pair whose prompts differ in token length is dropped and counted (it
  would be mis-scored position by position); a corruption identical to the
  clean prompt (no digits to redraw) is dropped too, as it carries no signal.
  Zero usable pairs is a SparkError.
* ``examples = N`` keeps the first N usable pairs.
* Answer tokens (``logit_diff``/``prob``): the first token of the row's
  ``answer`` when the dataset has one, else None (the engine then uses the clean
  run's greedy token).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from sparkql.errors import SparkError
from sparkql.plan.steps import CircuitParams, DatasetRef
from sparkql.runtime.eap.engine import Example


@dataclass
class PairSet:
    examples: list[Example]
    ids: list[str]
    """Dataset row id of each example."""
    n_rows: int
    n_dropped: int
    """Pairs dropped because the two prompts' token lengths differ."""
    n_identical: int = 0
    """Pairs dropped because the corruption left the prompt unchanged."""
    clean_texts: list[str] = field(default_factory=list)
    corrupt_texts: list[str] = field(default_factory=list)


def _row_rng(seed: int, row_id: str) -> random.Random:
    h = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


def redraw_digits(text: str, rng: random.Random) -> str:
    """Every ASCII digit replaced by a different random digit."""
    out = []
    for ch in text:
        if ch.isdigit() and ch.isascii():
            out.append(rng.choice([d for d in "0123456789" if d != ch]))
        else:
            out.append(ch)
    return "".join(out)


def _encode(tok: Any, text: str) -> list[int]:
    from sparkql.runtime.generation.prompting import encode_prompt  # the same tokens generation uses

    return encode_prompt(tok, text)


def greedy_opening(lm: Any, ids: list[int], n: int) -> list[int]:
    """The model's own greedy continuation of ``ids``, up to ``n`` tokens (stops at EOS)."""
    import torch

    model, tok = lm.model, lm.tokenizer
    eos = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    cur = torch.tensor([ids], device=lm.device)
    out: list[int] = []
    past = None
    with torch.no_grad():
        for _ in range(n):
            res = model(input_ids=cur if past is None else cur[:, -1:], past_key_values=past, use_cache=True)
            past = res.past_key_values
            nxt = int(res.logits[0, -1].argmax())
            if nxt in eos:
                break
            out.append(nxt)
            cur = torch.cat([cur, torch.tensor([[nxt]], device=lm.device)], dim=1)
    return out


def build_pairs(lm: Any, ds: DatasetRef, params: CircuitParams, rows: list[dict] | None = None,
                log: Callable[[str], None] = print) -> PairSet:
    """Token-level clean/corrupted pairs for EAP-IG on ``lm`` (a LoadedModel)."""
    from sparkql.runtime.datasets import load_rows
    from sparkql.runtime.generation.prompting import render_prompt

    tok = lm.tokenizer
    roles = set(ds.roles)
    verbatim = "clean" in roles
    if not verbatim and "problem" not in roles:
        raise SparkError(f"dataset {ds.name} has neither a `clean` nor a `problem` role",
                         hint=f'map one: dataset {ds.name} = "..." (clean = "<field>", corrupt = "<field>")')
    corrupt = params.corrupt
    if corrupt == "pairs" and "corrupt" not in roles:
        raise SparkError(f"dataset {ds.name} has no `corrupt` role, needed for corrupt = pairs",
                         hint=f'map it (corrupt = "<field>") or use corrupt = digits | shuffle')
    if rows is None:
        rows = load_rows(ds)
    key = "clean" if verbatim else "problem"

    def render(text: str) -> str:
        if verbatim:
            return text
        return render_prompt(tok, text, think=params.think, system=params.system)

    clean_txt = [render(str(r[key])) for r in rows]
    clean_ids = [_encode(tok, t) for t in clean_txt]
    if corrupt == "pairs":
        corrupt_txt = [render(str(r["corrupt"])) for r in rows]
    elif corrupt == "digits":
        corrupt_txt = [render(redraw_digits(str(r[key]), _row_rng(params.seed, r["id"]))) for r in rows]
    else:
        corrupt_txt = [None] * len(rows)  # chosen below, by token length
    corrupt_ids = [_encode(tok, t) if t is not None else None for t in corrupt_txt]
    if corrupt == "shuffle":
        by_len: dict[int, list[int]] = {}
        for i, ids in enumerate(clean_ids):
            by_len.setdefault(len(ids), []).append(i)
        for i, r in enumerate(rows):
            others = [j for j in by_len[len(clean_ids[i])] if j != i and clean_txt[j] != clean_txt[i]]
            if others:
                j = _row_rng(params.seed, r["id"]).choice(others)
                corrupt_txt[i], corrupt_ids[i] = clean_txt[j], clean_ids[j]
            else:
                corrupt_txt[i], corrupt_ids[i] = clean_txt[i], None  # no partner: dropped as unequal

    examples, ids, ctexts, xtexts = [], [], [], []
    n_dropped = n_identical = 0
    want = params.examples
    for i, r in enumerate(rows):
        if want is not None and len(examples) >= want:
            break
        c, x = clean_ids[i], corrupt_ids[i]
        if x is None or len(c) != len(x):
            n_dropped += 1
            continue
        if not verbatim:
            opening: list[int] = []
            if params.prefix_sample > 0:
                opening = greedy_opening(lm, c, params.prefix_sample)
            elif params.prefix:
                opening = _encode_continuation(tok, clean_txt[i], params.prefix)
            c, x = c + opening, x + opening
        if params.max_tokens is not None and len(c) > params.max_tokens:
            c, x = c[-params.max_tokens :], x[-params.max_tokens :]
        if c == x:  # nothing corrupted (no digits, or truncation cut the difference away)
            n_identical += 1
            continue
        target = None
        if "answer" in r and r["answer"] is not None and str(r["answer"]).strip():
            a = tok(str(r["answer"]).strip(), add_special_tokens=False)["input_ids"]
            target = a[0] if a else None
        examples.append(Example(c, x, target=target))
        ids.append(str(r["id"]))
        ctexts.append(clean_txt[i])
        xtexts.append(corrupt_txt[i])
    if n_dropped:
        log(f"warning: {ds.name}: dropped {n_dropped} of {len(rows)} pairs whose clean and corrupted prompts "
            f"have different token lengths")
    if n_identical:
        log(f"warning: {ds.name}: dropped {n_identical} pairs whose corruption left the prompt unchanged")
    if not examples:
        hint = {
            "pairs": "make each corrupt prompt the same number of tokens as its clean prompt",
            "digits": "the problems need digits to redraw (or use corrupt = shuffle / pairs)",
            "shuffle": "no two problems have prompts of equal token length: use corrupt = digits or pairs",
        }[corrupt]
        raise SparkError(f"circuit on {ds.name}: no usable clean/corrupted pairs (of {len(rows)} rows)", hint=hint)
    return PairSet(examples=examples, ids=ids, n_rows=len(rows), n_dropped=n_dropped, n_identical=n_identical,
                   clean_texts=ctexts, corrupt_texts=xtexts)


def _encode_continuation(tok: Any, prompt: str, prefix: str) -> list[int]:
    """Token ids of ``prefix`` as it continues ``prompt`` (tokenized in context, so a merge across
    the boundary does not shift later tokens)."""
    full = _encode(tok, prompt + prefix)
    base = _encode(tok, prompt)
    if full[: len(base)] == base:
        return full[len(base) :]
    return list(tok(prefix, add_special_tokens=False)["input_ids"])
