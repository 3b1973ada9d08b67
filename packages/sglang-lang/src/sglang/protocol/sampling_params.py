"""Per-request sampling parameters, shared by the frontend, the server and the runtime.

Kept free of torch so the frontend and the HTTP layer can validate requests cheaply; the runtime
turns a batch of these into tensors in `sglang.runtime.layers.sampler`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from sglang.protocol.errors import InvalidRequest

# Temperatures below this are treated as greedy: dividing logits by them overflows float32.
SAMPLING_EPS = 1e-6
# Integer fields travel as int64 (msgpack on the IPC, torch tensors); a value beyond that range
# means nothing any model could honour, so it is refused rather than wrapped or clipped.
INT64_MAX = 2**63 - 1

_PATH_RE = re.compile(r"at `\$\.([A-Za-z_][A-Za-z0-9_]*)")
_UNKNOWN_RE = re.compile(r"unknown field `([^`]*)`")
_MISSING_RE = re.compile(r"missing required field `([^`]*)`")


class SamplingParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Defaults mirror SGLang's `SamplingParams` so requests behave the same on both."""

    max_new_tokens: int = 128
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    n: int = 1
    seed: int | None = None
    regex: str | None = None
    json_schema: str | None = None
    ebnf: str | None = None
    # The regex / json_schema / ebnf applies only after the output contains this text
    # (a reasoning model's "</think>"): before it, generation is free.
    constraint_after: str | None = None
    # Token id (as a string, OpenAI's shape) -> added to that token's logit before sampling.
    logit_bias: dict[str, float] | None = None
    # SGLang's names: `sampling_seed` is `seed` per request; generation stops when the decoded
    # output matches a `stop_regex` pattern (trimmed like a stop string).
    sampling_seed: int | None = None
    stop_regex: str | list[str] | None = None
    # SGLang's custom logit processors' arguments: declared only to be refused by name.
    custom_params: Any = None

    def __post_init__(self) -> None:
        # Folded into `seed` at once, so the rest of the runtime knows one name (and the
        # front door's per-copy seeds stay consistent).
        if self.sampling_seed is None:
            return
        if self.seed is not None and self.seed != self.sampling_seed:
            raise InvalidRequest(f"sampling_seed={self.sampling_seed} and seed={self.seed} "
                                 "disagree: give one of them", "sampling_seed")
        self.seed, self.sampling_seed = self.sampling_seed, None

    # ---- validation -----------------------------------------------------------------------

    def verify(self, vocab_size: int | None = None) -> None:
        """Raise InvalidRequest (a ValueError) for the first offending field: the message has
        its value and the allowed range, `.param` its name.

        Comparisons are written as `not (lo <= x <= hi)` so that NaN is rejected too.

        Clipped, not refused (by the front door, `sglang.runtime.inputs`): a `top_k` above the
        vocabulary (the same as no filter) and a `max_new_tokens` beyond what is left of the
        context. Refused: non-integers for integer fields (`top_k` 1e30) and integers beyond
        int64 (`max_new_tokens` 2**70), which no model could mean.
        """
        _check_int(self, "max_new_tokens")
        _check_int(self, "min_new_tokens")
        _check_int(self, "top_k")
        _check_int(self, "n")
        if not 0.0 <= self.temperature < math.inf:  # an infinite one is no distribution
            _bad("temperature", self.temperature, "must be finite and >= 0")
        if not 0.0 < self.top_p <= 1.0:
            _bad("top_p", self.top_p, "must be in (0, 1]")
        if not (self.top_k == -1 or self.top_k >= 1):
            _bad("top_k", self.top_k, "must be -1 (disabled) or >= 1")
        if not 0.0 <= self.min_p <= 1.0:
            _bad("min_p", self.min_p, "must be in [0, 1]")
        if not -2.0 <= self.frequency_penalty <= 2.0:
            _bad("frequency_penalty", self.frequency_penalty, "must be in [-2, 2]")
        if not -2.0 <= self.presence_penalty <= 2.0:
            _bad("presence_penalty", self.presence_penalty, "must be in [-2, 2]")
        if not 0.0 < self.repetition_penalty <= 2.0:
            _bad("repetition_penalty", self.repetition_penalty, "must be in (0, 2]")
        if self.max_new_tokens < 0:
            _bad("max_new_tokens", self.max_new_tokens, "must be >= 0")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            _bad(
                "min_new_tokens",
                self.min_new_tokens,
                f"must be in [0, max_new_tokens={self.max_new_tokens}]",
            )
        if self.n < 1:
            _bad("n", self.n, "must be >= 1")
        constraints = [k for k in ("regex", "json_schema", "ebnf") if getattr(self, k) is not None]
        if len(constraints) > 1:
            raise InvalidRequest(
                f"only one of regex, json_schema, ebnf may be set, got {', '.join(constraints)}",
                constraints[1],
            )
        if self.constraint_after is not None and not self.constraint_after:
            _bad("constraint_after", self.constraint_after, "must be a non-empty string")
        for s in self.stop_strs:
            if not isinstance(s, str) or not s:
                _bad("stop", self.stop, "stop strings must be non-empty strings")
        if self.custom_params is not None:
            raise InvalidRequest(
                "custom_params is not supported: this server runs no custom logit processors",
                "custom_params",
            )
        for pattern in self.stop_regex_list:
            check_stop_regex(pattern)
        if self.logit_bias:
            check_logit_bias(self.logit_bias, vocab_size)
        if self.stop_token_ids is not None:
            for t in self.stop_token_ids:
                if isinstance(t, bool) or not isinstance(t, int) or t < 0:
                    _bad("stop_token_ids", t, "must be non-negative token ids")
                if vocab_size is not None and t >= vocab_size:
                    _bad("stop_token_ids", t, f"must be in [0, {vocab_size})")

    # ---- derived views --------------------------------------------------------------------

    @property
    def stop_strs(self) -> list[str]:
        if self.stop is None:
            return []
        if isinstance(self.stop, str):
            return [self.stop]
        return list(self.stop)

    @property
    def stop_regex_list(self) -> list[str]:
        if self.stop_regex is None:
            return []
        return [self.stop_regex] if isinstance(self.stop_regex, str) else list(self.stop_regex)

    def bias_pairs(self) -> list[tuple[int, float]]:
        """`logit_bias` as (token id, bias), zero biases left out; verify() checked the ids."""
        return [(int(k), float(v)) for k, v in (self.logit_bias or {}).items() if v != 0.0]

    @property
    def is_greedy(self) -> bool:
        return self.temperature < SAMPLING_EPS or self.top_k == 1

    def normalized(self) -> SamplingParams:
        """A copy with list-valued `stop` / `stop_token_ids` (never None) so consumers
        need no type switches; the original is left untouched because callers may share it."""
        return msgspec.structs.replace(
            self,
            stop=self.stop_strs,
            stop_token_ids=list(self.stop_token_ids or []),
        )

    # ---- (de)serialisation ----------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SamplingParams:
        """Build from a JSON-like dict; type errors and unknown keys become InvalidRequest
        naming the field (`.param`; None for an unknown key or a non-dict)."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise InvalidRequest(f"sampling params must be a dict, got {type(d).__name__}")
        try:
            return msgspec.convert(d, cls)
        except msgspec.ValidationError as e:
            raise _describe(str(e)) from e

    def to_dict(self) -> dict[str, Any]:
        # to_builtins copies containers, so mutating the result can't alias this struct.
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


# OpenAI's range for a logit bias; +100 forces a token, -100 bans it.
LOGIT_BIAS_LIMIT = 100.0


def check_logit_bias(bias: dict[str, float], vocab_size: int | None) -> None:
    """Keys are token ids written as decimal strings, values in [-100, 100]."""
    if not isinstance(bias, dict):
        _bad("logit_bias", bias, "must map token ids (strings) to numbers")
    for key, value in bias.items():
        if not isinstance(key, str) or not key.strip().isdigit():
            _bad("logit_bias", key, "keys must be token ids (non-negative integers as strings)")
        tok = int(key)
        if vocab_size is not None and tok >= vocab_size:
            _bad("logit_bias", key, f"token ids must be in [0, {vocab_size})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not -LOGIT_BIAS_LIMIT <= value <= LOGIT_BIAS_LIMIT:
            _bad("logit_bias", value, f"values must be in [-{LOGIT_BIAS_LIMIT:g}, "
                 f"{LOGIT_BIAS_LIMIT:g}] (for token {key})")


def check_stop_regex(pattern: object) -> None:
    if not isinstance(pattern, str) or not pattern:
        _bad("stop_regex", pattern, "patterns must be non-empty strings")
    try:
        compiled = re.compile(pattern)  # type: ignore[arg-type]
    except re.error as e:
        raise InvalidRequest(f"stop_regex {pattern!r} does not compile: {e}", "stop_regex") from e
    if compiled.match(""):
        _bad("stop_regex", pattern, "patterns must not match the empty string")


def _bad(field: str, value: object, allowed: str) -> None:
    raise InvalidRequest(f"{field} {allowed}, got {value!r}", field)


def _check_int(p: SamplingParams, field: str) -> None:
    # Structs built directly (not via from_dict) skip msgspec's type checks.
    v = getattr(p, field)
    if isinstance(v, bool) or not isinstance(v, int):
        _bad(field, v, "must be an integer")
    if not -INT64_MAX - 1 <= v <= INT64_MAX:
        _bad(field, v, "must fit in a 64-bit integer")


def _describe(msg: str) -> InvalidRequest:
    """msgspec's message, led by the field it is about; an unknown key names no field of ours."""
    m = _UNKNOWN_RE.search(msg)
    if m:
        return InvalidRequest(f"unknown sampling param {m.group(1)!r}: {msg}")
    m = _MISSING_RE.search(msg)
    if m:
        return InvalidRequest(f"missing {m.group(1)!r}: {msg}", m.group(1))
    m = _PATH_RE.search(msg)
    if m:
        return InvalidRequest(f"invalid value for {m.group(1)}: {msg}", m.group(1))
    return InvalidRequest(f"invalid sampling params: {msg}")


__all__ = [
    "INT64_MAX", "LOGIT_BIAS_LIMIT", "SAMPLING_EPS", "InvalidRequest", "SamplingParams",
    "check_logit_bias", "check_stop_regex",
]
