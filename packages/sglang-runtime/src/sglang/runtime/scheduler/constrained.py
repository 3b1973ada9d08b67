"""The scheduler's constrained-decoding steps: queueing requests whose grammar compiled,
jump-forward, and refusing a request whose grammar admits no token of the vocabulary.

A mixin of `Scheduler` (it reads and changes the scheduler's queues), kept apart so the core
loop stays readable.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from sglang.runtime.grammar.base import constraint_of
from sglang.runtime.messages import FinishReason, TokenOutput
from sglang.runtime.scheduler.request import Req, ReqState

if TYPE_CHECKING:
    from sglang.runtime.grammar.manager import GrammarManager
    from sglang.runtime.scheduler.kv_manager import KVManager
    from sglang.runtime.scheduler.output import OutputProcessor


class ConstrainedSteps:
    # Provided by Scheduler.
    grammar: GrammarManager | None
    waiting: deque[Req]
    running: list[Req]
    chunked: Req | None
    in_flight: Any
    kv: KVManager
    out: OutputProcessor
    context_len: int
    jump_forwards: int
    jump_forward_tokens: int

    def finish_request(self, req: Req, new_ids: list[int]) -> TokenOutput:
        raise NotImplementedError

    def _emit(self, req: Req, new_ids: list[int], outputs: list[TokenOutput]) -> None:
        raise NotImplementedError

    def _queue_compiled(self, outputs: list[TokenOutput]) -> None:
        """Queue the requests whose grammar has compiled (after any text it forces at the start);
        answer those whose spec did not compile. Waits briefly when there is nothing else to do."""
        assert self.grammar is not None
        idle = not (self.waiting or self.running or self.chunked or self.in_flight)
        ready, failed = self.grammar.poll(wait=idle)
        for f in failed:
            f.req.finish_reason = FinishReason.abort(f.message, f.status)
            out = self.finish_request(f.req, [])
            out.error = f.message
            outputs.append(out)
        for req in ready:
            jumped = self._jump_forward(req, None)
            if req.finished:
                outputs.append(self.finish_request(req, jumped or []))
                continue
            if jumped:
                self._emit(req, jumped, outputs)
            self.waiting.append(req)

    def _jump_forward(self, req: Req, last: int | None) -> list[int] | None:
        """Append the text `req`'s grammar forces next (grammar/jump_forward.py), in place of
        `last`, the token just sampled (None: before the first output token). Returns the ids to
        send for this step, or None when there is no jump.

        A decoding request then gives its KV to the radix cache and goes back to the queue: its
        next extend finds everything before the jump cached and prefills only the new tokens.
        """
        if self.grammar is None or req.grammar is None:
            return None
        # Leave the model at least one token, within max_new_tokens and the context.
        budget = min(req.remaining_new_tokens, self.context_len - req.fill_len) - 1
        ids = self.grammar.jump(req, last, budget)
        if ids is None:
            return None
        if last is not None:
            req.output_ids.pop()
        req.output_ids.extend(ids)
        self.jump_forwards += 1
        self.jump_forward_tokens += len(ids) - (last is not None)
        self.out.check_finish(req, self.context_len, new_tokens=len(ids))
        if last is not None and not req.finished:
            if req in self.running:
                self.running.remove(req)
            self.kv.release(req)
            req.state = ReqState.WAITING
            self.waiting.appendleft(req)
        return ids

    def _grammar_dead_end(self, req: Req, tok: int) -> TokenOutput:
        """The sampled token is not in the grammar: every token was masked (the constraint
        cannot go on with this vocabulary). The token is dropped and the request refused."""
        req.output_ids.pop()
        message = (f"the {constraint_of(req.params)[0]} allows no token after "  # type: ignore[index]
                   f"{len(req.output_ids)} output tokens: it cannot be completed with this "
                   "model's vocabulary")
        req.finish_reason = FinishReason.abort(message, 400)
        out = self.finish_request(req, [])
        out.error = message
        return out
