"""A deterministic, thread-safe BaseBackend test double (no server, no torch).

generate() answers from a script: a list (consumed in order), a dict (the value of the longest
key the prompt ends with) or a callable(ctx, params); without a script it echoes the prompt's
last non-empty line. Stop strings and max_new_tokens (1 token = 1 character here) are honoured
like the runtime does: the output is cut before the first stop string. Every call is recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sglang.lang.backend.base import (
    BaseBackend,
    Context,
    GenParams,
    SelectResult,
    decide_select,
)
from sglang.lang.chat_template import PLAIN, ChatTemplate
from sglang.lang.choices import ChoiceScores, ChoicesSamplingMethod

Script = list[str] | dict[str, str] | Callable[[Context, GenParams], str] | None


class FakeBackend(BaseBackend):
    def __init__(
        self,
        script: Script = None,
        *,
        select_scores: dict[str, float] | Callable[[Context, list[str]], list[float]] | None = None,
        chat_template: ChatTemplate = PLAIN,
        stream_chunk: int = 2,
        fail_on: str | None = None,
        gate: threading.Event | None = None,
        delay: float = 0.0,
        supports_images: bool = False,
        supports_speculative_gen: bool = False,
        supports_chat_speculation: bool = False,
        token_logprobs: dict[str, list[float]] | None = None,
        unconditional_logprobs: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__()
        self.script = list(script) if isinstance(script, list) else script
        self.select_scores = select_scores
        self.chat_template = chat_template
        self.stream_chunk = stream_chunk
        self.fail_on = fail_on  # raise RuntimeError when the prompt contains this
        self.gate = gate  # generate() waits for it: lets a test observe "not finished yet"
        self.delay = delay
        self.supports_images = supports_images
        self.supports_speculative_gen = supports_speculative_gen
        self.supports_chat_speculation = supports_chat_speculation
        # select: per-choice token logprobs (the score is their mean) and, for
        # unconditional_likelihood_normalized, the choices' logprobs without the prompt.
        self.token_logprobs = token_logprobs
        self.unconditional_logprobs = unconditional_logprobs
        self.lock = threading.Lock()
        self.calls: list[tuple[str, Context, Any]] = []  # (kind, ctx, params or choices)
        self.cached_prefixes: list[str] = []
        self.flushes = 0

    def get_chat_template(self) -> ChatTemplate:
        return self.chat_template

    def count(self, kind: str) -> int:
        with self.lock:
            return sum(1 for k, _, _ in self.calls if k == kind)

    def _answer(self, ctx: Context, params: GenParams) -> str:
        if self.fail_on is not None and self.fail_on in ctx.text:
            raise RuntimeError(f"fake backend failure on {self.fail_on!r}")
        if callable(self.script):
            return self.script(ctx, params)
        if isinstance(self.script, list):
            with self.lock:
                if not self.script:
                    raise RuntimeError("fake backend script exhausted")
                return self.script.pop(0)
        if isinstance(self.script, dict):
            keys = [k for k in self.script if ctx.text.endswith(k)]
            if keys:
                return self.script[max(keys, key=len)]
        return ctx.text.rstrip("\n").rsplit("\n", 1)[-1]

    def generate(self, ctx: Context, params: GenParams) -> tuple[Any, dict[str, Any]]:
        if params.n is not None and params.n > 1:  # n samples: n script answers
            outs = [self._one(ctx, params) for _ in range(params.n)]
            return [t for t, _ in outs], {**outs[0][1], "n_meta_info": [m for _, m in outs]}
        return self._one(ctx, params)

    def _one(self, ctx: Context, params: GenParams) -> tuple[str, dict[str, Any]]:
        with self.lock:
            self.calls.append(("generate", ctx, params))
        if self.gate is not None:
            self.gate.wait()
        if self.delay:
            time.sleep(self.delay)
        text = self._answer(ctx, params)
        stops = [params.stop] if isinstance(params.stop, str) else list(params.stop or [])
        cut = [i for i in (text.find(s) for s in stops if s) if i >= 0]
        finish = "stop" if cut else "length"
        if cut:
            text = text[: min(cut)]
        if params.max_new_tokens is not None and len(text) > params.max_new_tokens:
            text, finish = text[: params.max_new_tokens], "length"
        with self.lock:
            self.token_usage.add(len(ctx.text), len(text))
        meta: dict[str, Any] = {"finish_reason": finish, "completion_tokens": len(text)}
        if params.return_logprob:  # what the runtime would add: one entry per character
            meta["output_token_logprobs"] = [[-1.0, ord(c), c] for c in text]
        return text, meta

    def generate_stream(
        self, ctx: Context, params: GenParams
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        text, meta = self.generate(ctx, params)
        for i in range(0, len(text), self.stream_chunk):
            yield text[i : i + self.stream_chunk], meta

    def select(self, ctx: Context, choices: list[str], temperature: float = 0.0,
               choices_method: ChoicesSamplingMethod | None = None) -> SelectResult:
        with self.lock:
            self.calls.append(("select", ctx, list(choices)))
        if self.fail_on is not None and self.fail_on in ctx.text:
            raise RuntimeError(f"fake backend failure on {self.fail_on!r}")
        if self.token_logprobs is not None:
            values = [list(self.token_logprobs[c]) for c in choices]
        elif callable(self.select_scores):
            values = [[v] for v in self.select_scores(ctx, choices)]
        else:
            table = self.select_scores or {}
            values = [[table.get(c, -10.0)] for c in choices]
        uncond = None
        if self.unconditional_logprobs is not None:
            uncond = [list(self.unconditional_logprobs[c]) for c in choices]
        return decide_select(choices, ChoiceScores(choices, values, uncond), temperature,
                             choices_method)

    def cache_prefix(self, prefix: str) -> None:
        with self.lock:
            self.cached_prefixes.append(prefix)

    def flush_cache(self) -> bool:
        self.flushes += 1
        return True

    def get_server_args(self) -> dict[str, Any]:
        return {"model_path": "fake-model"}
