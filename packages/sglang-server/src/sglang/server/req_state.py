"""What the tokenizer manager keeps for one request in flight: the outputs that arrived and not
yet consumed, and everything accumulated so far (text, ids, logprobs, timings)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sglang.runtime.messages import DetokOutput

Triple = tuple[float | None, int, str | None]


@dataclass
class RequestState:
    rid: str
    return_logprob: bool
    top_logprobs_num: int
    with_text: bool  # return_text_in_logprobs
    tokenizer: Any
    created: float = field(default_factory=time.monotonic)
    # Filled by the receive loop, drained by the request's coroutine.
    inbox: list[DetokOutput] = field(default_factory=list)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    # Accumulated.
    text: str = ""
    output_ids: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    finish_reason: dict[str, Any] | None = None
    finished: bool = False
    input_token_logprobs: list[Triple] = field(default_factory=list)
    input_top_logprobs: list[list[Triple] | None] = field(default_factory=list)
    output_token_logprobs: list[Triple] = field(default_factory=list)
    output_top_logprobs: list[list[Triple] | None] = field(default_factory=list)
    normalized_prompt_logprob: float | None = None
    disconnect_checked_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    last_token_at: float | None = None

    def push(self, out: DetokOutput) -> None:
        self.inbox.append(out)
        self.event.set()

    def take(self) -> list[DetokOutput]:
        items, self.inbox = self.inbox, []
        self.event.clear()
        return items

    # ---- folding outputs in -----------------------------------------------------------------
    def _fmt(self, pairs: list[tuple[float | None, int]] | None) -> list[Triple] | None:
        if pairs is None:
            return None
        # Token texts are decoded once, as the tokens arrive (lists here are cumulative).
        return [(lp, tok, self.tokenizer.decode([tok]) if self.with_text else None)
                for lp, tok in pairs]

    def fold(self, out: DetokOutput) -> None:
        self.text += out.text
        self.output_ids.extend(out.new_token_ids)
        self.prompt_tokens = out.prompt_tokens
        self.completion_tokens = out.completion_tokens
        self.cached_tokens = out.cached_tokens
        if out.finished:
            self.finished = True
            self.finish_reason = out.finish_reason
        if not self.return_logprob:
            return
        if out.input_token_logprobs is not None:
            self.input_token_logprobs = self._fmt(out.input_token_logprobs) or []
            self.input_top_logprobs = [self._fmt(t) for t in out.input_top_logprobs or []]
            scored = [lp for lp, _ in out.input_token_logprobs if lp is not None]
            self.normalized_prompt_logprob = sum(scored) / len(scored) if scored else None
        self.output_token_logprobs.extend(self._fmt(out.output_token_logprobs or []) or [])
        if self.top_logprobs_num:
            self.output_top_logprobs.extend(self._fmt(t) for t in out.output_top_logprobs or [])

    # ---- what the client sees -----------------------------------------------------------------
    def meta_info(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": self.rid,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "finish_reason": self.finish_reason,
        }
        if self.return_logprob:
            meta["input_token_logprobs"] = list(self.input_token_logprobs)
            meta["input_top_logprobs"] = list(self.input_top_logprobs)
            meta["output_token_logprobs"] = list(self.output_token_logprobs)
            meta["output_top_logprobs"] = list(self.output_top_logprobs)
            meta["normalized_prompt_logprob"] = self.normalized_prompt_logprob
        return meta

    def chunk(self, delta: str) -> dict[str, Any]:
        return {
            "text": self.text,
            "delta": delta,
            "output_ids": list(self.output_ids),
            "meta_info": self.meta_info(),
        }
