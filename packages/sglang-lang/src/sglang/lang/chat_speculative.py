"""Speculative execution for chat models (`num_api_spec_tokens` on an OpenAI chat backend).

A chat API answers whole assistant messages: it cannot continue "Name:" + gen + "\\nJob:" + gen
piece by piece. So, as SGLang does, an assistant block of a speculative program is not executed
node by node: its text and gens are collected (`ChatSpecPlan`) and, when the block ends, the
model answers once (up to `num_api_spec_tokens` tokens) and the answer is split along the
block's fixed text. A gen's value ends at its first stop string, or where the next fixed text
starts; the last gen with nothing after it takes the rest. Fixed text the model reworded
(whitespace around it) is found by its stripped form. An answer that does not follow the block's
shape is asked for again (`MAX_TRIES` in all) and then is an error naming the answer.

Inside such a block only text and `sgl.gen` may appear, and reading a gen's value before the
block ends is an error (the executor checks it where the body submits nodes): it would wait for
a call that only the block's end makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sglang.lang.backend.base import GenParams

if TYPE_CHECKING:
    from sglang.lang.interpreter import StreamExecutor

MAX_TRIES = 3


@dataclass
class _Term:
    text: str | None = None  # fixed text, or None for a gen
    name: str | None = None
    params: GenParams | None = None
    value: str = ""


def _stops(params: GenParams | None) -> list[str]:
    stop = params.stop if params is not None else None
    return [stop] if isinstance(stop, str) else [s for s in stop or [] if s]


@dataclass
class ChatSpecPlan:
    num_tokens: int
    terms: list[_Term] = field(default_factory=list)

    def add_text(self, text: str) -> None:
        if self.terms and self.terms[-1].text is not None:
            self.terms[-1].text += text
        else:
            self.terms.append(_Term(text=text))

    def add_gen(self, name: str | None, params: GenParams) -> None:
        if params.n not in (None, 1) or params.regex or params.json_schema:
            raise ValueError("a speculative assistant block (num_api_spec_tokens on a chat "
                             "model) takes plain gens only: no n, regex, json_schema or dtype")
        self.terms.append(_Term(name=name, params=params))

    def split(self, answer: str) -> bool:
        """Fill the gens' values from `answer`; False if it does not follow the block."""
        rest = answer
        for k, term in enumerate(self.terms):
            if term.text is not None:
                if rest.startswith(term.text):
                    rest = rest[len(term.text):]
                    continue
                core = term.text.strip()
                at = rest.find(core) if core else 0
                if at < 0:
                    return False
                rest = rest[at + len(core):]
                continue
            ends = [rest.find(s) for s in _stops(term.params)]
            following = next((t.text for t in self.terms[k + 1:] if t.text is not None), None)
            if following and following.strip():
                ends.append(rest.find(following.strip()))
            found = [e for e in ends if e >= 0]
            if not found and following is not None:
                return False
            end = min(found) if found else len(rest)
            term.value, rest = rest[:end], rest[end:]
        return True

    def run(self, ex: StreamExecutor, defaults: GenParams) -> None:
        """Ask the model for the block, then append its text and set its variables."""
        gens = [t for t in self.terms if t.text is None]
        meta: dict[str, Any] = {}
        if gens:
            first = gens[0].params or defaults
            call = replace(first, stop=None, max_new_tokens=self.num_tokens, n=None)
            answers: list[str] = []
            for _ in range(MAX_TRIES):
                answer, meta = ex.backend.generate(ex.context(), call)
                answers.append(str(answer))
                if self.split(str(answer)):
                    break
            else:
                raise ValueError(
                    f"the chat model's answers did not follow the speculative assistant "
                    f"block's fixed text in {MAX_TRIES} tries; the last: {answers[-1]!r}")
        for term in self.terms:
            ex.append_text(term.text if term.text is not None else term.value)
            if term.text is None and term.name is not None:
                ex.set_var(term.name, term.value, {**meta, "speculative": True})


__all__ = ["ChatSpecPlan", "MAX_TRIES"]
