"""What the tokenizer manager keeps for one request in flight: the outputs that arrived and are
not yet consumed, the accumulated result (runtime/result.py) and timings."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sglang.runtime.messages import DetokOutput
from sglang.runtime.result import ResultAccumulator


@dataclass
class RequestState:
    rid: str
    acc: ResultAccumulator
    created: float = field(default_factory=time.monotonic)
    # Filled by the receive loop, drained by the request's coroutine.
    inbox: list[DetokOutput] = field(default_factory=list)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    disconnect_checked_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    last_token_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.acc.finished

    def push(self, out: DetokOutput) -> None:
        self.inbox.append(out)
        self.event.set()

    def take(self) -> list[DetokOutput]:
        items, self.inbox = self.inbox, []
        self.event.clear()
        return items
