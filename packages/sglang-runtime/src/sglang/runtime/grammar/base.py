"""The grammar interface: a backend compiles a (kind, spec) into a grammar once; each request
gets its own matcher over it, which masks the next token, accepts sampled tokens and reports the
string the grammar forces next (jump-forward).

Token bitmasks are int32 rows, bit `i % 32` of word `i // 32` set when token `i` is allowed
(the layout xgrammar and outlines-core both write), so one batch buffer serves every backend.
"""

from __future__ import annotations

import abc
import json
from typing import Any, ClassVar

import torch

from sglang.runtime.grammar.schema_check import check_schema

# The constraint fields of SamplingParams, in the order they are looked up.
GRAMMAR_KINDS = ("regex", "json_schema", "ebnf")


class GrammarError(ValueError):
    """The spec does not compile; the message names the kind and the problem (a 400)."""


class Matcher(abc.ABC):
    """One request's position in its grammar."""

    @abc.abstractmethod
    def fill_mask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the allowed next tokens into `bitmask[row]` (a CPU int32 tensor)."""

    @abc.abstractmethod
    def accept(self, token: int) -> bool:
        """Advance by `token`; False (state unchanged) when the grammar does not allow it."""

    @abc.abstractmethod
    def is_terminated(self) -> bool:
        """The grammar is complete and a stop token was accepted: generation ends."""

    @abc.abstractmethod
    def forced_string(self) -> str:
        """The text every valid continuation starts with ("" when there is a choice)."""

    @abc.abstractmethod
    def rollback(self, num_tokens: int) -> None:
        """Undo the last `num_tokens` accepted tokens."""


class GrammarBackend(abc.ABC):
    """Compiles specs against one tokenizer's vocabulary; thread-safe `compile`."""

    name: ClassVar[str]
    # The constraint kinds it compiles; read from the class, before its library is imported.
    kinds: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def compile(self, kind: str, spec: str) -> Any:
        """A compiled grammar for `spec`, or GrammarError naming the problem."""

    @abc.abstractmethod
    def matcher(self, compiled: Any) -> Matcher:
        """A fresh matcher at the start of `compiled`."""


def constraint_of(params: Any) -> tuple[str, str] | None:
    """(kind, spec) of a request's SamplingParams, or None for free generation."""
    for kind in GRAMMAR_KINDS:
        spec = getattr(params, kind, None)
        if spec is not None:
            return kind, spec
    return None


def parse_json_schema(spec: str) -> Any:
    """The schema as JSON data; GrammarError when the string is not JSON at all, nests too
    deeply, or has a `$ref` that is remote or resolves to nothing (`schema_check`)."""
    try:
        schema = json.loads(spec)
    except RecursionError as e:
        raise GrammarError("invalid json_schema: nested too deeply") from e
    except (TypeError, ValueError) as e:
        raise GrammarError(f"invalid json_schema: not valid JSON ({e})") from e
    try:
        check_schema(schema)
    except ValueError as e:
        raise GrammarError(f"invalid json_schema: {e}") from e
    return schema
