"""Typed gens (`sgl.gen_int`, `sgl.gen_string`, `dtype=`) on OpenAI completion models.

The API cannot constrain output with a regex, so (as SGLang's OpenAI backend does) the model is
steered and its answer checked:
- str: the prompt gets an opening quote and generation stops at the closing one; the value is
  the quoted text, which is what `REGEX_STR` would have produced.
- int / float / bool: generation stops at the end of the line (or the gen's own stops) and the
  value is the leading number / True|False of the answer (leading spaces dropped); an answer
  that does not start with one is an error naming the text, never a silently wrong value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sglang.lang import ir
from sglang.lang.backend.base import GenParams

# The values, without REGEX_INT/FLOAT's trailing whitespace (that belongs to the text after).
_VALUE_PATTERNS: dict[type, re.Pattern[str]] = {
    int: re.compile(r"\s*([-+]?[0-9]+)"),
    float: re.compile(r"\s*([-+]?[0-9]*\.?[0-9]+)"),
    bool: re.compile(r"\s*(true|false)", re.IGNORECASE),
}

Complete = Callable[[str, GenParams], tuple[str, dict[str, Any]]]


def is_typed(params: GenParams) -> bool:
    """A dtype gen whose regex is the dtype's own (an explicit regex is something else)."""
    return params.dtype is not None and params.regex == ir.DTYPE_REGEX.get(params.dtype)  # type: ignore[arg-type]


def _stops(params: GenParams) -> list[str]:
    return [params.stop] if isinstance(params.stop, str) else list(params.stop or [])


def generate_typed(prompt: str, params: GenParams, complete: Complete) -> tuple[str, dict]:
    """Generate a typed value after `prompt` with `complete(prompt, params)`."""
    if params.n not in (None, 1):
        raise ValueError("typed gens (dtype=...) on the OpenAI backend take n=1")
    plain = replace(params, regex=None, dtype=None)
    if params.dtype is str:
        text, meta = complete(prompt + '"', replace(plain, stop=['"', *_stops(params)]))
        return f'"{text}"', meta
    pattern = _VALUE_PATTERNS[params.dtype]  # type: ignore[index]
    text, meta = complete(prompt, replace(plain, stop=[*_stops(params), "\n"]))
    found = pattern.match(text)
    if found is None:
        name = params.dtype.__name__  # type: ignore[union-attr]
        raise ValueError(f"the model answered {text!r}, which does not start with a {name} "
                         "(the OpenAI API cannot constrain output to a type)")
    return found.group(1), meta


__all__ = ["generate_typed", "is_typed"]
