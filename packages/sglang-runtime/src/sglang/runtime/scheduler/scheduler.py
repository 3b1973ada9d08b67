"""The scheduler: continuous batching over one model runner.

Each `step()` either extends (admits waiting requests, prefills their uncached tokens, possibly in
chunks) or decodes one token for every running request (or, speculating, verifies drafted tokens:
`speculative.py`). Extend has priority. When decode runs
out of slots it evicts cache, then retracts the requests with the least progress. Which
waiting requests start, and why every one eventually does: `admission.py`.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import torch

from sglang.runtime.config import RuntimeArgs
from sglang.runtime.executor.model_runner import ModelRunner
from sglang.runtime.grammar.base import constraint_of
from sglang.runtime.messages import FinishReason, SchedulerStats, TokenOutput
from sglang.runtime.pooling import PoolState
from sglang.runtime.scheduler.admission import Admission
from sglang.runtime.scheduler.batch_builder import build_decode, build_extend
from sglang.runtime.scheduler.constrained import ConstrainedSteps
from sglang.runtime.scheduler.kv_manager import KVManager
from sglang.runtime.scheduler.output import OutputProcessor
from sglang.runtime.scheduler.overlap import InFlightDecode, overlap_safe
from sglang.runtime.scheduler.policy import get_policy
from sglang.runtime.scheduler.request import Req, ReqState
from sglang.runtime.scheduler.speculative import SpeculativeSteps
from sglang.runtime.speculative import SpecCounters, make_proposer

if TYPE_CHECKING:
    from sglang.runtime.grammar.manager import GrammarManager

logger = logging.getLogger("sglang.runtime")

class Scheduler(Admission, ConstrainedSteps, SpeculativeSteps):
    def __init__(
        self,
        args: RuntimeArgs,
        runner: ModelRunner,
        kv: KVManager,
        output: OutputProcessor,
        context_len: int,
        max_running: int,
        chunk_size: int,
        grammar: GrammarManager | None = None,
        pooling: str | None = None,
    ) -> None:
        self.args = args
        # An embedding model's pooling (sglang.runtime.pooling); None: a generative model.
        self.pooling = pooling
        self.grammar = grammar  # constrained decoding; None: constraints are refused
        self.runner = runner
        self.kv = kv
        self.out = output
        self.context_len = context_len
        self.max_running = max_running
        self.chunk_size = chunk_size
        self.policy = get_policy(args.schedule_policy)
        self.waiting: deque[Req] = deque()
        self.running: list[Req] = []
        self.chunked: Req | None = None  # the request in the middle of a chunked prefill
        # A decode step launched but not yet read back (CUDA only; see scheduler/overlap.py).
        self.in_flight: InFlightDecode | None = None
        # The requests of the extend step in progress: if the step raises, they are in neither
        # queue yet and must still be failed (active_requests reports them).
        self._extending: list[Req] = []
        # Speculative decoding's drafter (None: off). Drafting needs each step's tokens on the
        # host, so a step where some request drafts is synchronous; the others still overlap.
        self.proposer = make_proposer(args) if pooling is None else None
        # Verify steps as DECODE batches of one row per token (None: when they fit the decode
        # CUDA graphs; tests force either layout).
        self.verify_as_decode: bool | None = None
        self.overlap = kv.req_pool.device.type == "cuda" and not args.disable_overlap_schedule
        self.new_token_ratio = args.init_new_token_ratio
        self._arrivals = 0
        self.extends_in_a_row = 0
        self.num_retractions = 0
        self.forward_steps = 0
        self.decode_steps = 0
        self.decode_batch_tokens = 0
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0
        self.generated_tokens = 0
        # Jump-forward: jumps taken and the tokens they appended without a decode step each.
        self.jump_forwards = 0
        self.jump_forward_tokens = 0

    # ---- requests in and out -------------------------------------------------------------
    def add_request(self, req: Req) -> None:
        if len(req.prompt_ids) == 0:
            raise ValueError("the prompt is empty: give text or input_ids with at least one token")
        if len(req.prompt_ids) >= self.context_len:
            raise ValueError(
                f"the prompt has {len(req.prompt_ids)} tokens; the context length is "
                f"{self.context_len}, which must leave room for at least one new token"
            )
        self._check_embed(req)
        # Generation stops at the context length, whatever max_new_tokens says, and at the
        # pool's size (clipped here: only the scheduler knows it).
        self.fit_to_pool(req)
        req.arrival = self._arrivals
        self._arrivals += 1
        if self.proposer is not None:
            req.spec = SpecCounters()
        if constraint_of(req.params) is not None:
            if self.grammar is None:
                raise ValueError("structured output (regex, json_schema, ebnf) is not enabled in "
                                 "this runtime")
            # Compiled off the loop; step() queues the request once its grammar is ready.
            self.grammar.submit(req)
            return
        self.waiting.append(req)

    def _check_embed(self, req: Req) -> None:
        if req.embed and self.pooling is None:
            raise ValueError("this model is served for generation; start it with "
                             "--is-embedding (is_embedding=True) to encode prompts")
        if not req.embed and self.pooling is not None:
            raise ValueError("this server serves an embedding model (--is-embedding): it "
                             "encodes prompts (/v1/embeddings, /encode) and generates nothing")
        if req.embed:
            if req.return_logprob or req.params.max_new_tokens != 0:
                raise ValueError("an embedding request takes no logprobs and generates nothing")
            req.pool = PoolState(self.pooling)  # type: ignore[arg-type]

    def abort(self, rid: str) -> TokenOutput | None:
        compiling = self.grammar.remove(rid) if self.grammar is not None else None
        queued = [*self.waiting, *self.running, *([self.chunked] if self.chunked else [])]
        for req in [*([compiling] if compiling else []), *queued]:
            if req.rid == rid:
                req.finish_reason = FinishReason.abort("aborted by the client")
                return self.finish_request(req, [])
        return None

    @property
    def has_work(self) -> bool:
        compiling = self.grammar is not None and self.grammar.has_pending
        return bool(self.waiting or self.running or self.chunked or self.in_flight or compiling)

    def stats(self) -> SchedulerStats:
        kv = self.kv
        return SchedulerStats(
            num_running=len(self.active_requests()),
            num_waiting=len(self.waiting) + (len(self.grammar.pending) if self.grammar else 0),
            kv_used_tokens=kv.num_slots - kv.allocator.available - kv.cache.evictable_size,
            kv_total_tokens=kv.num_slots,
            cached_prompt_tokens=self.cached_prompt_tokens,
            prompt_tokens=self.prompt_tokens,
            generated_tokens=self.generated_tokens,
            forward_steps=self.forward_steps,
            decode_steps=self.decode_steps,
            decode_batch_tokens=self.decode_batch_tokens,
            num_retractions=self.num_retractions,
        )

    def flush_cache(self) -> bool:
        """Drop every cached prefix; refused (False) while requests are in flight."""
        if self.has_work:
            return False
        self.kv.cache.reset()
        return True

    def active_requests(self) -> list[Req]:
        active = [*self.running, *([self.chunked] if self.chunked else [])]
        active += [r for r in self._extending if not r.finished and r not in active]
        return active

    # ---- the loop body --------------------------------------------------------------------
    def step(self) -> list[TokenOutput]:
        outputs: list[TokenOutput] = []
        if self.grammar is not None and self.grammar.has_pending:
            self._queue_compiled(outputs)
        reqs = self._schedule_extend()
        decoded = False
        if not reqs and self.running:
            decoded = self._run_decode(outputs)
            if not decoded and self.waiting:
                # Decode retracted every running request: admit now, so that no step runs
                # nothing while a request waits.
                reqs = self._schedule_extend()
        self.extends_in_a_row = self.extends_in_a_row + 1 if reqs else 0
        if reqs:
            self._drain(outputs)
            self._extending = reqs
            self._run_extend(reqs, outputs)
            self._extending = []
        elif not decoded:
            self._drain(outputs)
        if self.args.debug_check_integrity or not self.has_work:
            self.check_integrity()
        return outputs

    def check_integrity(self) -> None:
        self.kv.check_integrity(self.active_requests())

    # ---- extend ---------------------------------------------------------------------------
    def _run_extend(self, reqs: list[Req], outputs: list[TokenOutput]) -> None:
        done = [r.kv_len + r.extend_len >= r.fill_len for r in reqs]
        batch, rows = build_extend(
            reqs, [self._pending_slots(r) for r in reqs], self.kv.req_pool.table,
            self.kv.kv_pool, done,
        )
        logits = self.runner.forward(batch)
        self.forward_steps += 1
        sample_reqs: list[Req] = []
        sample_rows: list[int] = []
        for req, row, finished_prefill in zip(reqs, rows, done):
            if req.wants_input_logprobs and not req.output_ids:
                self.out.record_input_logprobs(req, logits[row.start : row.start + row.count])
            if req.pool is not None:
                req.pool.add(logits[row.start : row.start + row.count], req.kv_len)
            req.kv_len += req.extend_len
            req.extend_len = 0
            if finished_prefill and req.pool is not None:
                req.embedding = req.pool.vector()
            if finished_prefill and req.remaining_new_tokens == 0:
                # max_new_tokens=0: a prefill only (caching a prefix, scoring a prompt).
                req.finish_reason = FinishReason.at_length(req.params.max_new_tokens)
                outputs.append(self.finish_request(req, []))
            elif finished_prefill:
                self.kv.cache_prefix(req)
                req.state = ReqState.DECODING
                sample_reqs.append(req)
                sample_rows.append(row.start + row.count - 1)
        if sample_reqs:
            self._sample_and_emit(sample_reqs, logits[sample_rows], outputs)
            # Not those that finished, nor those a jump-forward sent back to the queue.
            self.running.extend(r for r in sample_reqs if r.state is ReqState.DECODING)

    def _pending_slots(self, req: Req) -> torch.Tensor:
        return self.kv.req_pool.table[req.row, req.kv_len : req.kv_len + req.extend_len]

    # ---- decode ---------------------------------------------------------------------------
    def _run_decode(self, outputs: list[TokenOutput]) -> bool:
        """One decode step (a verify step when there are drafts); False when retraction left
        nothing to decode."""
        if self.proposer is not None and self._drafting_due():
            waited = self.in_flight is not None
            self._drain(outputs)  # the proposer reads every request's latest token
            drafts = self._propose_drafts(waited)
            if any(drafts) and self._run_verify(drafts, outputs):
                self.new_token_ratio = max(self.new_token_ratio - self.args.new_token_ratio_decay,
                                           self.args.min_new_token_ratio)
                return True
            if not self.running:
                return False
        inputs = slots = None
        if self.in_flight is not None:
            if self.overlap and all(overlap_safe(r) for r in self.running):
                # Without retraction only: a retracted request's in-flight token has no KV home.
                slots = self.kv.alloc_slots(len(self.running))
                inputs = self.in_flight.inputs_for(self.running) if slots is not None else None
            if inputs is None:
                if slots is not None:
                    self.kv.allocator.free(slots)
                self._drain(outputs)
        if inputs is None:
            slots = self._reserve_decode_slots()
            if not self.running:
                return False
        assert slots is not None
        slots = self.kv.req_pool.write_one_each(
            [r.row for r in self.running], [r.kv_len for r in self.running], slots  # type: ignore[misc]
        )
        batch = build_decode(
            self.running, slots, self.kv.req_pool.table, self.kv.kv_pool, input_ids=inputs
        )
        logits = self.runner.forward(batch)
        self.forward_steps += 1
        self.decode_steps += 1
        self.decode_batch_tokens += len(self.running)
        for req in self.running:
            req.kv_len += 1
        reqs = list(self.running)
        if self.overlap and all(overlap_safe(r) for r in reqs):
            launched = InFlightDecode.launch(reqs, self.out.sample_on_device(reqs, logits))
            self._drain(outputs)  # the previous step's tokens, while the GPU runs this one
            self.in_flight = launched
        else:
            self._sample_and_emit(reqs, logits, outputs)
            self.running = [r for r in reqs if r.state is ReqState.DECODING]
        self.new_token_ratio = max(
            self.new_token_ratio - self.args.new_token_ratio_decay, self.args.min_new_token_ratio
        )
        return True

    def _reserve_decode_slots(self) -> torch.Tensor:
        """One slot per running request, retracting the least advanced requests if needed."""
        while self.running:
            slots = self.kv.alloc_slots(len(self.running))
            if slots is not None:
                return slots
            victim = min(self.running, key=lambda r: (len(r.output_ids), -len(r.prompt_ids)))
            self.running.remove(victim)
            self.kv.retract(victim)
            victim.state = ReqState.WAITING
            self.waiting.appendleft(victim)
            self.num_retractions += 1
            self.new_token_ratio = self.args.init_new_token_ratio
            logger.info("retracted request %s (KV pool full)", victim.rid)
        return torch.empty(0, dtype=torch.int64)

    # ---- sampling and finishing -----------------------------------------------------------
    def _sample_and_emit(
        self, reqs: list[Req], logits: torch.Tensor, outputs: list[TokenOutput]
    ) -> None:
        self._append_tokens(reqs, self.out.sample(reqs, logits), outputs)

    def _drain(self, outputs: list[TokenOutput]) -> None:
        """Read back and process the in-flight decode step, if any."""
        if self.in_flight is None:
            return
        flight, self.in_flight = self.in_flight, None
        tokens = flight.tokens()
        # Requests finished (or aborted) meanwhile ran one step too many: drop that token.
        live = [i for i, r in enumerate(flight.reqs) if r.state != ReqState.FINISHED]
        self._append_tokens([flight.reqs[i] for i in live], [tokens[i] for i in live], outputs)

    def _append_tokens(
        self, reqs: list[Req], next_ids: list[int], outputs: list[TokenOutput]
    ) -> None:
        self.generated_tokens += len(reqs)
        for req, tok in zip(reqs, next_ids):
            req.output_ids.append(tok)
            if req.grammar is not None and not req.grammar.accept(tok):
                outputs.append(self._grammar_dead_end(req, tok))
                continue
            self.out.check_finish(req, self.context_len)
            jumped = None if req.finished else self._jump_forward(req, tok)
            self._emit(req, [tok] if jumped is None else jumped, outputs)

    def _emit(self, req: Req, new_ids: list[int], outputs: list[TokenOutput]) -> None:
        """Send `new_ids` (finishing the request if it has finished); a request that is not
        streamed sends nothing until then (`OutputProcessor.emit`)."""
        out = self.finish_request(req, new_ids) if req.finished else self.out.emit(req, new_ids)
        if out is not None:
            outputs.append(out)

    def finish_request(self, req: Req, new_ids: list[int]) -> TokenOutput:
        if req in self.running:
            self.running.remove(req)
        if req is self.chunked:
            self.chunked = None
        if req in self.waiting:
            self.waiting.remove(req)
        self.kv.release(req)
        req.state = ReqState.FINISHED
        out = self.out.emit(req, new_ids)
        assert out is not None  # a finished request's output is never held
        return out
