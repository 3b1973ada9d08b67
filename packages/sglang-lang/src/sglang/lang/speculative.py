"""Speculative execution for API backends (`@sgl.function(num_api_spec_tokens=N)`).

An API call has a high fixed cost, so a program like
    s += "Name:" + sgl.gen("name", stop="\\n") + "\\nAge:" + sgl.gen("age", stop="\\n")
can be served by one call: the first gen asks for max(max_tokens, N) tokens with no stop string,
keeps the text up to its own stop string and holds the rest (starting with that stop string) as
speculated text. Constant text appended next must be a prefix of the speculated text (it is then
consumed); later gens take the speculated text up to their own stop string. A mismatch, or a gen
whose stop string is not in the speculated text, drops it and calls the backend again.

Only gens with stop strings and no regex/json_schema constraint speculate, and only on backends
that set `supports_speculative_gen = True`; everything else clears the speculated text.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sglang.lang.backend.base import GenParams

if TYPE_CHECKING:
    from sglang.lang.interpreter import StreamExecutor


def _stops(params: GenParams) -> list[str]:
    if params.stop is None:
        return []
    return [params.stop] if isinstance(params.stop, str) else [s for s in params.stop if s]


def _first_stop(text: str, stops: list[str]) -> int:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else -1


class SpecBuffer:
    def __init__(self) -> None:
        self.text = ""

    def clear(self) -> None:
        self.text = ""

    def match_text(self, value: str) -> None:
        """Constant text either confirms the speculation (and is consumed) or invalidates it."""
        if self.text.startswith(value):
            self.text = self.text[len(value) :]
        else:
            self.text = ""

    @staticmethod
    def applies(executor: StreamExecutor, params: GenParams) -> bool:
        return bool(
            executor.num_api_spec_tokens
            and getattr(executor.backend, "supports_speculative_gen", False)
            and _stops(params)
            and params.regex is None
            and params.json_schema is None
        )

    def gen(self, executor: StreamExecutor, params: GenParams) -> tuple[str, dict[str, Any]]:
        stops = _stops(params)
        if self.text:
            pos = _first_stop(self.text, stops)
            if pos >= 0:
                value, self.text = self.text[:pos], self.text[pos:]
                return value, {"speculative": True}
        assert executor.num_api_spec_tokens is not None
        call = replace(
            params,
            stop=None,
            max_new_tokens=max(params.max_new_tokens or 0, executor.num_api_spec_tokens),
        )
        out, meta = executor.backend.generate(executor.context(), call)
        pos = _first_stop(out, stops)
        if pos < 0:  # the speculation ran out before this gen's stop: it gets everything
            self.text = ""
            return out, meta
        value, self.text = out[:pos], out[pos:]
        return value, meta
