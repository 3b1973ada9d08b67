"""Speculative decode steps: draft with the proposer, verify every draft in one forward pass.

A verify step replaces a decode step when some running request has drafts. Every running
request feeds [last token, d1..dk] as an extend on top of its cached tokens (k = 0 for requests
that cannot speculate or found nothing to draft) and gets logits for all k + 1 positions. Row i
is sampled as a decode step would sample after d1..di (penalties and min_new_tokens see that
history), so with greedy sampling the accepted drafts are exactly the tokens plain decoding
would have produced: the longest prefix of drafts equal to the rows' tokens, plus the token of
the first disagreeing (or last) row. Each step thus emits 1..k+1 tokens per request.

KV: the step writes k + 1 slots per request; those of rejected drafts go straight back to the
allocator, and kv_len advances over the accepted ones only (the table entries past kv_len are
never read). Tokens past a stop condition are never appended; their slots are freed when the
request is released (`KVManager.release` frees slots past fill_len).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sglang.runtime.grammar.base import constraint_of
from sglang.runtime.messages import TokenOutput
from sglang.runtime.scheduler.batch_builder import build_verify
from sglang.runtime.scheduler.request import Req, ReqState

if TYPE_CHECKING:
    from sglang.runtime.scheduler.scheduler import Scheduler


def can_speculate(req: Req) -> bool:
    """Whether verification reproduces this request's tokens exactly: greedy, free text (a
    grammar masks per token), no logprobs (drafts would need per-row records), text only."""
    return (
        req.params.is_greedy
        and req.grammar is None
        and constraint_of(req.params) is None
        and not req.return_logprob
        and not req.mm_items
        and req.pool is None
    )


def accepted_length(drafts: list[int], tokens: list[int]) -> int:
    """How many drafts the model agrees with: tokens[i] is its choice after drafts[:i]."""
    n = 0
    while n < len(drafts) and drafts[n] == tokens[n]:
        n += 1
    return n


class SpeculativeSteps:
    """The scheduler's verify step (mixed into `Scheduler`)."""

    def _drafting_due(self: Scheduler) -> bool:
        """Whether some running request may draft at this step. If none may, the step is an
        ordinary (overlappable) decode step, counted here against every back-off. While the
        last tokens are in flight, a request whose proposer could not match whatever token
        arrives does not count."""
        assert self.proposer is not None
        in_flight = self.in_flight is not None
        if any(can_speculate(r) and r.spec is not None and r.spec.due
               and (not in_flight or self.proposer.may_draft(r)) for r in self.running):
            return True
        for req in self.running:
            if req.spec is not None:
                req.spec.should_draft()
        return False

    def _propose_drafts(self: Scheduler, waited: bool) -> list[list[int]]:
        """Drafts per running request; `waited`: the step waited for in-flight tokens to
        draft from (finding nothing then counts against the request's idle back-off)."""
        assert self.proposer is not None
        k_max = self.args.speculative_num_draft_tokens
        vocab = self.out.vocab_size
        drafts = []
        for req in self.running:
            # The bonus token always comes: k drafts emit up to k + 1 tokens, which must fit
            # in max_new_tokens and the context.
            room = min(k_max, req.remaining_new_tokens - 1, self.context_len - req.fill_len - 1)
            draft: list[int] = []
            if (room > 0 and can_speculate(req) and req.spec is not None
                    and req.spec.should_draft()):
                draft = self.proposer.propose(req, room)
                if not draft and waited:
                    req.spec.record_idle()
            # Media placeholder ids (past the vocabulary) can never be sampled: cut there.
            cut = next((i for i, t in enumerate(draft) if not 0 <= t < vocab), len(draft))
            drafts.append(draft[:cut])
        return drafts

    def _run_verify(self: Scheduler, drafts: list[list[int]], outputs: list[TokenOutput]
                    ) -> bool:
        """One verify step over every running request; False (nothing done) when the pool
        has no room for the drafts: the caller then decodes, retracting if it must."""
        reqs = list(self.running)
        sizes = [len(d) + 1 for d in drafts]
        slots = self.kv.alloc_slots(sum(sizes))
        if slots is None:
            return False
        row_reqs = [r for r, n in zip(reqs, sizes) for _ in range(n)]
        # Slot j of a request goes at position kv_len + j of its row.
        on_device = self.kv.req_pool.write_one_each(
            [r.row for r in row_reqs],  # type: ignore[misc]
            [r.kv_len + j for r, n in zip(reqs, sizes) for j in range(n)], slots,
        )
        as_decode = self.verify_as_decode
        if as_decode is None:
            as_decode = self.runner.graph_fits(len(slots))
        batch = build_verify(reqs, drafts, on_device, self.kv.req_pool.table, self.kv.kv_pool,
                             as_decode=as_decode)
        logits = self.runner.forward(batch)
        self.forward_steps += 1
        self.decode_steps += 1
        self.decode_batch_tokens += len(reqs)
        tokens = self.out.sample(row_reqs, logits, lambda: [
            r.output_ids + d[:i] for r, d in zip(reqs, drafts) for i in range(len(d) + 1)])
        plain_reqs: list[Req] = []
        plain_ids: list[int] = []
        start = 0
        for req, draft in zip(reqs, drafts):
            row_ids = tokens[start : start + len(draft) + 1]
            mine = slots[start : start + len(draft) + 1]
            start += len(draft) + 1
            if not draft:
                # An ordinary decode step: the usual path (grammars, jump-forward, logprobs).
                req.kv_len += 1
                plain_reqs.append(req)
                plain_ids.append(row_ids[0])
                continue
            n = accepted_length(draft, row_ids)
            if n < len(draft):
                self.kv.allocator.free(mine[n + 1 :])
            req.kv_len += n + 1
            assert req.spec is not None
            req.spec.record(len(draft), n)
            self._append_run(req, row_ids[: n + 1], outputs)
        self._append_tokens(plain_reqs, plain_ids, outputs)
        self.running = [r for r in reqs if r.state is ReqState.DECODING]
        return True

    def _append_run(self: Scheduler, req: Req, run: list[int], outputs: list[TokenOutput]
                    ) -> None:
        """Append accepted tokens one at a time, stopping at the first stop condition, and
        emit them as one output."""
        emitted = 0
        for tok in run:
            req.output_ids.append(tok)
            emitted += 1
            self.out.check_finish(req, self.context_len)
            if req.finished:
                break
        self.generated_tokens += emitted
        self._emit(req, run[:emitted], outputs)
