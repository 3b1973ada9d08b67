"""The outlines-core backend (regex and JSON schema), for regexes written against outlines: the
same regex engine accepts the same language.

outlines-core indexes a regex over the vocabulary (token -> next state). It has no jump-forward
search of its own, so `forced_string` walks the index: while every allowed token starts with the
same bytes, those bytes are forced; where one allowed token is exactly those bytes the walk
continues past it.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, ClassVar

import numpy as np
import torch

from sglang.runtime.grammar.base import GrammarBackend, GrammarError, Matcher, parse_json_schema
from sglang.runtime.grammar.vocab import TokenVocab

# Forced runs longer than this are found in pieces (one per jump).
MAX_FORCED_BYTES = 256
# States allowing more tokens than this are not searched for a forced prefix: it would be short
# or empty, and listing the tokens costs more than it saves.
MAX_CANDIDATES = 512
# Integer ranges up to this many values become an enum: outlines-core ignores minimum/maximum.
MAX_ENUM_RANGE = 1000


def _valid_utf8_prefix(data: bytes) -> str:
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            return data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return ""


def bound_integers(schema: Any) -> Any:
    """The schema with small bounded integer ranges spelled out as enums, so outlines-core
    enforces them as xgrammar does."""
    if isinstance(schema, list):
        return [bound_integers(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bound_integers(v) for k, v in schema.items()}
    if out.get("type") != "integer":
        return out
    lo, hi = out.get("minimum"), out.get("maximum")
    if isinstance(out.get("exclusiveMinimum"), int | float):
        lo = int(out["exclusiveMinimum"]) + 1
    if isinstance(out.get("exclusiveMaximum"), int | float):
        hi = -int(-out["exclusiveMaximum"]) - 1
    if isinstance(lo, int | float) and isinstance(hi, int | float):
        lo, hi = -int(-lo // 1), int(hi // 1)  # ceil / floor
        if 0 <= hi - lo < MAX_ENUM_RANGE:
            return {"enum": list(range(lo, hi + 1))}
    return out


class OutlinesMatcher(Matcher):
    def __init__(self, guide: Any, backend: OutlinesBackend) -> None:
        self.guide = guide
        self.b = backend
        self._terminated = False
        self._scratch = torch.zeros(backend.mask_words, dtype=torch.int32)

    def fill_mask(self, bitmask: torch.Tensor, row: int) -> None:
        target = bitmask[row]
        self.guide.write_mask_into(target.data_ptr(), target.numel(), 4)
        if self.guide.is_finished():
            for t in self.b.vocab.eos_ids:  # outlines knows one EOS; the model may have several
                target[t // 32] |= _bit(t % 32)

    def accept(self, token: int) -> bool:
        if self._terminated:
            return False
        if token in self.b.eos_set:
            if not self.guide.is_finished():
                return False
            self._terminated = True
            return True
        try:
            self.guide.advance(token, return_tokens=False)
        except ValueError:
            return False
        return True

    def is_terminated(self) -> bool:
        return self._terminated

    def rollback(self, num_tokens: int) -> None:
        if num_tokens and self._terminated:
            self._terminated = False
            num_tokens -= 1
        if num_tokens:
            self.guide.rollback_state(num_tokens)

    def _allowed_count(self) -> int:
        self.guide.write_mask_into(self._scratch.data_ptr(), self._scratch.numel(), 4)
        return int(np.unpackbits(self._scratch.numpy().view(np.uint8)).sum())

    def forced_string(self) -> str:
        if self._terminated:
            return ""
        out, walked = b"", 0
        try:
            while len(out) < MAX_FORCED_BYTES and not self.guide.is_finished():
                if self._allowed_count() > MAX_CANDIDATES:
                    break
                ids = [t for t in self.guide.get_tokens() if t not in self.b.eos_set]
                pieces = [self.b.vocab.token_bytes[t] for t in ids]
                prefix = os.path.commonprefix(pieces) if pieces else b""
                if not prefix:
                    break
                out += prefix
                exact = next((t for t, p in zip(ids, pieces) if p == prefix), None)
                if exact is None:
                    break
                self.guide.advance(exact, return_tokens=False)
                walked += 1
        finally:
            if walked:
                self.guide.rollback_state(walked)
        return _valid_utf8_prefix(out)


def _bit(i: int) -> int:
    # As a signed int32: bit 31 is the sign bit.
    return (1 << i) - (1 << 32 if i == 31 else 0)


class OutlinesBackend(GrammarBackend):
    name: ClassVar[str] = "outlines"
    kinds: ClassVar[tuple[str, ...]] = ("regex", "json_schema")

    def __init__(self, vocab: TokenVocab) -> None:
        import outlines_core

        self._oc = outlines_core
        self.vocab = vocab
        self.eos_set = set(vocab.eos_ids)
        self.mask_words = (vocab.vocab_size + 31) // 32
        if not vocab.eos_ids:
            raise GrammarError("the outlines backend needs an EOS token id")
        skip = vocab.special_ids | self.eos_set
        table: dict[bytes, list[int]] = {}
        for i, piece in enumerate(vocab.token_bytes):
            if piece and i not in skip:
                table.setdefault(piece, []).append(i)
        self.vocabulary = outlines_core.Vocabulary(vocab.eos_ids[0], table)

    def compile(self, kind: str, spec: str) -> Any:
        if kind == "json_schema":
            schema = bound_integers(parse_json_schema(spec))
            try:
                # No free whitespace, as with xgrammar: compact JSON, forced key runs.
                regex = self._oc.json_schema.build_regex_from_schema(json.dumps(schema), "")
            except Exception as e:
                raise GrammarError(f"invalid json_schema: {e}") from e
        elif kind == "regex":
            regex = spec
        else:
            raise GrammarError(
                f"the outlines grammar backend supports regex and json_schema, not {kind}; "
                "use the xgrammar backend"
            )
        try:
            return self._oc.Index(regex, self.vocabulary)
        except Exception as e:
            raise GrammarError(f"invalid {kind}: {_regex_problem(regex, e)}") from e

    def matcher(self, compiled: Any) -> Matcher:
        # Rollback depth covers a forced-string walk plus the jump that follows it.
        return OutlinesMatcher(self._oc.Guide(compiled, max_rollback=2 * MAX_FORCED_BYTES), self)


def _regex_problem(regex: str, e: BaseException) -> str:
    """outlines-core says only "Failed to build DFA"; Python's parser usually says where."""
    try:
        re.compile(regex)
    except re.error as parse_error:
        return f"{parse_error} ({e})"
    return str(e)
