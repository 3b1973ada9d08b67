"""Admission: which waiting requests start (or resume) their prefill this step.

Rules, each there to keep every request moving when the KV pool is small:

- **Fit to the pool** (`fit_to_pool`, at `add_request`): a sequence can never hold more slots than
  the pool has, so `max_new_tokens` is clipped to `num_slots - prompt`, as the front door clips
  it to the context. The request then ends with `{"type": "length"}` at that limit, the same
  answer as at the context limit, rather than a 400 for a request whose prompt fits (clients
  that leave max_tokens unset ask for the whole context, which a small pool could never hold).
  A prompt that leaves no slot for one new token is refused.
- **Idle admits the oldest**: with nothing running, the first request in policy order is
  admitted whatever its headroom; it fits the whole pool (rule above), so a retracted request is
  always re-admitted once the pool drains, and decode retraction covers the rest.
- **Bounded skip-ahead**: a request that does not fit now lets later ones that do fit start, so
  a short request is not stuck behind a long one; but once the first blocked request has been
  passed over `SKIP_AHEAD_LIMIT` times, admission stops behind it until it fits, so it cannot
  starve either (running requests finish or are retracted, and then it fits).
- **Decode is never starved**: extend has priority, but after `MAX_EXTENDS_IN_A_ROW` extend steps
  with requests waiting to decode, one decode step runs, so a stream of arrivals (each step
  admitting someone) cannot hold the running requests still.

A mixin of `Scheduler` (it reads and changes the scheduler's queues).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from sglang.runtime.scheduler.request import Req, ReqState

if TYPE_CHECKING:
    from sglang.runtime.scheduler.kv_manager import KVManager

logger = logging.getLogger("sglang.runtime")

# Requests whose uncached prompts start with the same tokens are not prefilled in the same
# step: the first one computes the shared part, the rest find it in the cache a step later.
IN_BATCH_PREFIX_KEY = 32
# Steps in which later requests may start ahead of the first one that does not fit; past it,
# admission waits for that one (see the module docstring).
SKIP_AHEAD_LIMIT = 16
# Extend steps in a row while requests wait to decode; then one decode step runs.
MAX_EXTENDS_IN_A_ROW = 8


class Admission:
    # Provided by Scheduler.
    waiting: deque[Req]
    running: list[Req]
    chunked: Req | None
    kv: KVManager
    policy: Any
    max_running: int
    chunk_size: int
    new_token_ratio: float
    cached_prompt_tokens: int
    prompt_tokens: int
    extends_in_a_row: int

    def fit_to_pool(self, req: Req) -> None:
        """Refuse a prompt the pool cannot hold with one new token; clip max_new_tokens so that
        prompt + output fits the pool (see the module docstring)."""
        n, slots = len(req.prompt_ids), self.kv.num_slots
        if n + 1 > slots:
            raise ValueError(
                f"the prompt has {n} tokens but the KV pool holds only {slots}; "
                "raise max_total_tokens"
            )
        p = req.params
        if p.max_new_tokens > slots - n:
            room = slots - n
            logger.info("request %s: max_new_tokens %d clipped to %d (KV pool of %d tokens)",
                        req.rid, p.max_new_tokens, room, slots)
            req.params = msgspec.structs.replace(
                p, max_new_tokens=room, min_new_tokens=min(p.min_new_tokens, room)
            )

    def _headroom(self, req: Req) -> float:
        """Decode slots to keep for `req`: all it may still emit when only the length can stop
        it (ignore_eos, no stop strings or ids, no grammar), else an adaptive share of that."""
        p = req.params
        certain = (
            p.ignore_eos and not p.stop_strs and not p.stop_token_ids and not p.stop_regex
            and req.grammar is None
        )
        return req.remaining_new_tokens * (1.0 if certain else self.new_token_ratio)

    def _continue_chunked(self, batch: list[Req]) -> int:
        """Slots for the next chunk of the request in the middle of a chunked prefill; returns
        the budget left for admitting others (0: this step prefills only that chunk)."""
        req, budget = self.chunked, self.chunk_size
        assert req is not None
        n = min(req.fill_len - req.kv_len, budget)
        if self.kv.grow(req, n) is None:
            if self.running:
                return 0  # decode runs and frees slots (finishing or retracting)
            # Nothing else can free slots: start this prompt over, admitted below if it fits.
            self.kv.retract(req)
            req.state = ReqState.WAITING
            self.waiting.appendleft(req)
            self.chunked = None
            return budget
        req.extend_len = n
        batch.append(req)
        if req.kv_len + n < req.fill_len:
            return 0
        self.chunked = None
        return budget - n

    def _schedule_extend(self) -> list[Req]:
        if self.running and self.extends_in_a_row >= MAX_EXTENDS_IN_A_ROW:
            return []  # decode's turn
        batch: list[Req] = []
        budget = self._continue_chunked(batch) if self.chunked is not None else self.chunk_size
        if not self.waiting or budget <= 0:
            return batch
        reserved = sum(self._headroom(r) for r in self.running)
        seen_keys: set[tuple[int, ...]] = set()
        admitted: set[int] = set()
        blocked: Req | None = None  # the first request this step that did not fit
        passed = False  # a request was admitted after `blocked`
        for req in self.policy(list(self.waiting), self.kv.cache):
            if len(self.running) + len(batch) >= self.max_running or budget <= 0:
                break
            m = self.kv.match(req)
            extend = req.fill_len - m.cached_len
            key = (m.cached_len, *req.fill_ids[m.cached_len : m.cached_len + IN_BATCH_PREFIX_KEY])
            if len(key) > IN_BATCH_PREFIX_KEY and key in seen_keys:
                continue  # shares an uncached prefix with a request admitted this step
            need = extend + self._headroom(req)
            idle = not self.running and not batch
            chunk = min(extend, budget)
            # With nothing running, admit whatever fits now: retraction covers the headroom.
            fits = need <= self.kv.available_tokens - reserved or idle
            if not fits or self.kv.admit(req, m, chunk) is None:
                if blocked is None:
                    blocked = req
                if blocked.passed_over >= SKIP_AHEAD_LIMIT:
                    break
                continue
            if req.cached_tokens is None:
                # A jump-forward may have put output tokens ahead of the first prefill; those
                # are not prompt tokens, cached or not.
                req.cached_tokens = min(m.cached_len, len(req.prompt_ids))
                self.cached_prompt_tokens += req.cached_tokens
                self.prompt_tokens += len(req.prompt_ids)
            req.state = ReqState.PREFILLING
            req.passed_over = 0
            passed = passed or blocked is not None
            seen_keys.add(key)
            admitted.add(id(req))
            batch.append(req)
            budget -= chunk
            reserved += self._headroom(req)
            if chunk < extend:
                self.chunked = req
                break
        if blocked is not None and passed:
            blocked.passed_over += 1
        if admitted:
            self.waiting = deque(r for r in self.waiting if id(r) not in admitted)
        return batch
