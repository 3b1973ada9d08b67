"""The scheduler's side of constrained decoding: compiles grammars off the loop (one worker
thread, futures cached by (backend, kind, spec)), gives each request its matcher when its grammar
is ready, and plans jump-forwards.

A request whose grammar is still compiling waits here, not in the scheduler's queue, so it
holds no KV and the loop never blocks on a compile while other requests can run.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from sglang.runtime.grammar.base import GrammarBackend, GrammarError, Matcher, constraint_of
from sglang.runtime.grammar.jump_forward import CONTEXT_TOKENS, plan_jump
from sglang.runtime.grammar.reasoning_gate import ReasoningGate
from sglang.runtime.grammar.registry import backend_kinds, create_backend
from sglang.runtime.grammar.vocab import TokenVocab
from sglang.runtime.scheduler.request import Req

logger = logging.getLogger("sglang.runtime")

# How long an otherwise idle scheduler waits on a compile before looking at its inbox again.
COMPILE_WAIT_S = 0.02
CACHE_SIZE = 256


@dataclass
class GrammarFailure:
    req: Req
    message: str
    status: int  # 400: the spec's fault; 500: ours


class GrammarManager:
    def __init__(
        self,
        backend: str,
        tokenizer: Any,
        vocab_size: int,
        eos_ids: set[int],
        jump_forward: bool = True,
        cache_size: int = CACHE_SIZE,
        synchronous: bool = False,
    ) -> None:
        self.kinds = backend_kinds(backend)  # validates the name
        self.backend_name = backend
        self.vocab = TokenVocab(tokenizer, vocab_size, eos_ids) if tokenizer is not None else None
        self.jump_forward = jump_forward
        self.cache_size = cache_size
        # Every poll waits for every compile (deterministic admission, e.g. for TP ranks).
        self.synchronous = synchronous
        self.compiles = 0  # cache misses: grammars actually compiled
        self.pending: list[tuple[Req, futures.Future]] = []
        self._backend: GrammarBackend | None = None
        self._lock = threading.Lock()
        self._pool: futures.ThreadPoolExecutor | None = None
        self._cache: OrderedDict[tuple[str, str, str], futures.Future] = OrderedDict()

    # ---- compiling ---------------------------------------------------------------------------
    def backend(self) -> GrammarBackend:
        with self._lock:  # built on first use, on whichever thread gets there first
            if self._backend is None:
                assert self.vocab is not None
                self._backend = create_backend(self.backend_name, self.vocab)
            return self._backend

    def compiled(self, kind: str, spec: str) -> futures.Future:
        """The (cached) compile of a spec, as a future."""
        key = (self.backend_name, kind, spec)
        fut = self._cache.get(key)
        if fut is not None:
            self._cache.move_to_end(key)
            return fut
        if self._pool is None:
            self._pool = futures.ThreadPoolExecutor(1, thread_name_prefix="sglang-grammar")
        fut = self._pool.submit(self._compile, kind, spec)
        self._cache[key] = fut
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return fut

    def _compile(self, kind: str, spec: str) -> Any:
        self.compiles += 1
        return self.backend().compile(kind, spec)

    # ---- requests ----------------------------------------------------------------------------
    @property
    def has_pending(self) -> bool:
        return bool(self.pending)

    def submit(self, req: Req) -> None:
        """Start compiling `req`'s constraint; ValueError when this runtime cannot serve it."""
        constraint = constraint_of(req.params)
        assert constraint is not None, "submit() takes constrained requests only"
        kind, spec = constraint
        if self.vocab is None:
            raise ValueError(f"structured output ({kind}) needs a tokenizer; the model was "
                             "loaded without one")
        if kind not in self.kinds:
            raise ValueError(f"the {self.backend_name} grammar backend does not support {kind} "
                             f"(it supports {', '.join(self.kinds)})")
        self.pending.append((req, self.compiled(kind, spec)))

    def poll(self, wait: bool = False) -> tuple[list[Req], list[GrammarFailure]]:
        """Requests whose grammar is ready (each now has its matcher) and those whose spec
        failed to compile. With `wait`, block briefly until at least one compile is done."""
        if self.synchronous:
            futures.wait([f for _, f in self.pending])
        elif wait and self.pending and not any(f.done() for _, f in self.pending):
            futures.wait([f for _, f in self.pending], timeout=COMPILE_WAIT_S,
                         return_when=futures.FIRST_COMPLETED)
        ready: list[Req] = []
        failed: list[GrammarFailure] = []
        still: list[tuple[Req, futures.Future]] = []
        for req, fut in self.pending:
            if not fut.done():
                still.append((req, fut))
                continue
            err = fut.exception()
            if isinstance(err, GrammarError):
                failed.append(GrammarFailure(req, str(err), 400))
            elif err is not None:
                self._forget(fut)  # maybe transient: the next request compiles again
                kind = (constraint_of(req.params) or ("grammar",))[0]
                failed.append(GrammarFailure(req, f"compiling the {kind} failed: {err!r}", 500))
            else:
                try:
                    req.grammar = self._matcher(req, fut.result())
                except Exception as e:  # a bug, not the spec's fault: answer, don't loop
                    logger.exception("creating a grammar matcher failed")
                    failed.append(GrammarFailure(req, f"creating the matcher failed: {e!r}", 500))
                    continue
                ready.append(req)
        self.pending = still
        return ready, failed

    def _matcher(self, req: Req, compiled: Any) -> Matcher:
        matcher = self.backend().matcher(compiled)
        after = req.params.constraint_after
        if after and self.vocab is not None:
            return ReasoningGate(matcher, after, self.vocab.token_bytes)
        return matcher

    def remove(self, rid: str) -> Req | None:
        for i, (req, _) in enumerate(self.pending):
            if req.rid == rid:
                del self.pending[i]
                return req
        return None

    def _forget(self, fut: futures.Future) -> None:
        for key, value in list(self._cache.items()):
            if value is fut:
                del self._cache[key]

    # ---- jump-forward ------------------------------------------------------------------------
    def jump(self, req: Req, last: int | None, budget: int) -> list[int] | None:
        """Plan a jump for `req` (see `plan_jump`); None when there is none or jumps are off.
        Requests that return logprobs never jump: forced tokens have no sampled logprob."""
        if (not self.jump_forward or req.grammar is None or req.return_logprob or budget < 1
                or self.vocab is None):
            return None
        out = req.output_ids[:-1] if last is not None else req.output_ids
        prefix = (req.prompt_ids[-CONTEXT_TOKENS:] + out[-CONTEXT_TOKENS:])[-CONTEXT_TOKENS:]
        try:
            return plan_jump(req.grammar, self.vocab.tokenizer, prefix, last, budget)
        except Exception:  # an optimisation only: the request decodes on without it
            logger.warning("jump-forward failed for request %s; decoding on", req.rid,
                           exc_info=True)
            return None

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
