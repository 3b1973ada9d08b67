"""The tokenizer manager: the server process's side of the pipeline.

It tokenizes and validates requests, sends them to the scheduler, and routes what the
detokenizer sends back to one `RequestState` per rid (a background task reads the socket).
A request whose client goes away is aborted so its KV slots are freed at once.

Preparation (tokenization, and for prompts with image_data / video_data the model's input
processor loading and decoding the media) blocks, so it runs in a worker thread: the event loop,
and /health with it, never waits behind a long prompt or a large image. The input processor and
the model config it needs are built on the first request with media, so text-only serving never
pays for them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import Any

import msgspec

from sglang.protocol.generate import GenerateReqInput
from sglang.runtime.inputs import ModelLimits, PreparedRequest
from sglang.runtime.messages import (
    AbortReq,
    CheckIntegrityReq,
    DetokOutput,
    DetokOutputBatch,
    FinishReason,
    FlushCacheReq,
    FlushCacheResult,
    IntegrityResult,
    SchedulerStats,
    StatsReq,
    TokenizedGenerateReq,
    TokenizerManagerInput,
)
from sglang.runtime.result import ResultAccumulator, ResultStep
from sglang.server.args import ServerArgs
from sglang.server.errors import APIError, bad_request
from sglang.server.ipc import IpcAddrs, pull_socket, push_socket
from sglang.server.metrics import ServerMetrics
from sglang.server.req_state import RequestState
from sglang.server.request_log import log_request
from sglang.server.validation import prepare_http

logger = logging.getLogger("sglang.server")

# How often a waiting request checks whether its HTTP client is still there.
DISCONNECT_POLL_S = 0.5
CONTROL_TIMEOUT_S = 60.0
# One preparation thread: HF tokenizers are not safe to share across threads, and requests
# reach the scheduler in the order they were prepared, as they did on the event loop.
PREPARE_THREADS = 1


def _resolve_chat_template(name: str | None, tokenizer: Any) -> Any:
    try:
        from sglang.server.chat_templates import resolve_chat_template
    except ImportError:
        if name is not None:
            logger.warning("--chat-template %s ignored: chat templates are not available", name)
        return None
    return resolve_chat_template(name, tokenizer)  # ValueError for an unknown name


class TokenizerManager:
    def __init__(
        self,
        server_args: ServerArgs,
        tokenizer: Any,
        addrs: IpcAddrs,
        runtime_info: dict[str, Any],
        model_path: str,
        tokenizer_path: str,
    ) -> None:
        self.server_args = server_args
        self.tokenizer = tokenizer
        self.addrs = addrs
        self.runtime_info = runtime_info
        self.context_len: int = runtime_info["context_len"]
        self.vocab_size: int = runtime_info["vocab_size"]
        self.limits = ModelLimits(self.context_len, self.vocab_size)
        self.model_path = model_path
        self.tokenizer_path = tokenizer_path
        self.served_model_name = server_args.model_name(model_path)
        self.chat_template = _resolve_chat_template(server_args.chat_template, tokenizer)
        self.metrics = ServerMetrics(self.served_model_name)
        self.stream_interval = server_args.runtime.stream_interval
        # Keyed by the rid the scheduler sees (`<rid>#<seq>`); meta_info reports `<rid>`.
        self.states: dict[str, RequestState] = {}
        self._rids_in_use: set[str] = set()
        self._seq = 0
        self._waiters: dict[type, deque[asyncio.Future]] = {
            FlushCacheResult: deque(), SchedulerStats: deque(), IntegrityResult: deque()
        }
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(TokenizerManagerInput)
        self._push: Any = None
        self._pull: Any = None
        self._recv_task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # Set by the launcher: why the pipeline can't serve (a child died), or that we drain.
        self.unhealthy_reason: str | None = None
        self.draining = False
        self._prepare_pool = ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="sglang-prepare")
        self._model_config: Any = None  # built by the first request with media
        self._model_config_lock = threading.Lock()

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the sockets and start the receive loop (inside the server's event loop)."""
        import zmq
        import zmq.asyncio

        self.loop = asyncio.get_running_loop()
        # Sends never block (no high-water mark), so a plain socket is simplest for them.
        self._sync_ctx = zmq.Context()
        self._async_ctx = zmq.asyncio.Context()
        self._push = push_socket(self._sync_ctx, self.addrs.scheduler_in)
        self._pull = pull_socket(self._async_ctx, self.addrs.tokenizer_in)
        self._recv_task = asyncio.create_task(self._recv_loop(), name="sglang-tm-recv")

    async def stop(self) -> None:
        if self._recv_task is not None:
            self._recv_task.cancel()
            try:
                await self._recv_task
            except (asyncio.CancelledError, Exception):
                pass
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)
        for ctx in (getattr(self, "_async_ctx", None), getattr(self, "_sync_ctx", None)):
            if ctx is not None:
                ctx.destroy(linger=0)

    @property
    def is_healthy(self) -> bool:
        return (
            self.unhealthy_reason is None and self._recv_task is not None
            and not self._recv_task.done()
        )

    def begin_drain(self, timeout: float) -> None:
        """SIGTERM: new requests get a 503 from now on; requests still running after `timeout`
        seconds get a 503 (a final SSE error event when streaming) rather than being cut off
        when the HTTP server stops. Safe to call from a signal handler, and more than once."""
        if self.draining:
            return
        self.draining = True
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.call_later, timeout, self._drain_expired,
                                           timeout)

    def _drain_expired(self, timeout: float) -> None:
        if self.states:
            logger.warning("drain timeout (%g s) expired: %d request(s) still running get a 503",
                           timeout, len(self.states))
        self._fail_requests(f"the server is shutting down (requests still running after "
                            f"{timeout:g} s are stopped)")

    def fail_all(self, reason: str) -> None:
        """The pipeline is gone: every waiting request and control call gets an error now
        rather than hanging."""
        self.unhealthy_reason = reason
        self._fail_requests(reason)

    def _fail_requests(self, reason: str) -> None:
        for state in list(self.states.values()):
            state.push(DetokOutput(
                rid=state.rid, new_token_ids=[], finished=True, error=reason,
                finish_reason=FinishReason.abort(reason, 503),
            ))
        for waiters in self._waiters.values():
            while waiters:
                fut = waiters.popleft()
                if not fut.done():
                    fut.set_exception(APIError(reason, 503, "server_error"))

    # ---- the receive loop -------------------------------------------------------------------
    async def _recv_loop(self) -> None:
        # One handler per message type: text outputs go to their requests, control replies to
        # the oldest caller waiting for that reply type.
        handlers: dict[type, Callable[[Any], None]] = {
            DetokOutputBatch: self._on_outputs,
            **{t: self._on_reply for t in self._waiters},
        }
        while True:
            raw = await self._pull.recv()
            try:
                msg = self._decoder.decode(raw)
            except msgspec.DecodeError:
                logger.exception("tokenizer manager: dropped an undecodable message")
                continue
            handlers[type(msg)](msg)

    def _on_outputs(self, batch: DetokOutputBatch) -> None:
        for out in batch.outputs:
            state = self.states.get(out.rid)
            if state is not None:  # else: aborted, its client is gone
                state.push(out)

    def _on_reply(self, msg: Any) -> None:
        waiters = self._waiters[type(msg)]
        # Replies come back in the order the requests went out.
        if waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(msg)

    def _send(self, msg: Any) -> None:
        if self._push is None:
            raise APIError("the server is not started", 503, "server_error")
        self._push.send(self._encoder.encode(msg))

    async def _control(self, msg: Any, reply: type, timeout: float = CONTROL_TIMEOUT_S) -> Any:
        if self.unhealthy_reason is not None:
            raise APIError(self.unhealthy_reason, 503, "server_error")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiters[reply].append(fut)
        self._send(msg)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError as e:
            raise APIError("the scheduler did not answer in time", 503, "server_error") from e

    async def flush_cache(self) -> FlushCacheResult:
        return await self._control(FlushCacheReq(), FlushCacheResult)

    async def get_stats(self, timeout: float = CONTROL_TIMEOUT_S) -> SchedulerStats:
        return await self._control(StatsReq(), SchedulerStats, timeout)

    async def check_integrity(self) -> IntegrityResult:
        return await self._control(CheckIntegrityReq(), IntegrityResult)

    def abort(self, rid: str | None) -> list[str]:
        """Abort the running requests whose id is `rid` (or a fan-out copy `rid-<i>` of it),
        every one when None; each ends with finish_reason abort. The ids aborted."""
        keys = [k for k, s in self.states.items() if rid is None or s.rid == rid
                or (s.rid.startswith(f"{rid}-") and s.rid[len(rid) + 1:].isdigit())]
        for key in keys:
            self._send(AbortReq(rid=key))
        return sorted({self.states[k].rid for k in keys})

    # ---- generation -------------------------------------------------------------------------
    async def prepare(self, obj: GenerateReqInput) -> PreparedRequest:
        """Validate, tokenize and fan out a request (runtime/inputs.py) in the preparation
        thread: one scheduler message per generation; raises APIError (400) naming the field."""
        return await self.run_prepare(lambda: self.prepare_blocking(obj))

    async def run_prepare(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` (tokenizer work: the tokenizer lives in that thread) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._prepare_pool, fn)

    def prepare_blocking(self, obj: GenerateReqInput) -> PreparedRequest:
        """`prepare` on the calling thread (never the event loop's)."""
        return prepare_http(obj, self.tokenizer, self.limits, self.input_processor)

    def input_processor(self) -> Any:
        """The model's input processor (the front door's processor source); ValueError, which
        the front door answers with a 400 naming image_data / video_data, for a model that
        takes no media."""
        from sglang.runtime.multimodal import input_processor_for

        with self._model_config_lock:
            if self._model_config is None:
                from sglang.runtime.loading import load_model_config

                self._model_config = load_model_config(
                    self.model_path, self.server_args.runtime.load_format
                )
        # Cached per config and architecture by the runtime.
        return input_processor_for(self._model_config)

    async def prepare_one(self, obj: GenerateReqInput) -> TokenizedGenerateReq:
        prepared = await self.prepare(obj)
        if len(prepared.reqs) != 1:
            raise bad_request("expected one prompt with n == 1 here")
        return prepared.reqs[0].msg

    async def generate(self, obj: GenerateReqInput, request: Any = None,
                     prepared: TokenizedGenerateReq | None = None) -> AsyncIterator[dict[str, Any]]:
        """Run one prompt (n == 1) and yield /generate's chunks `{"text": cumulative, "delta":
        new text, "output_ids": cumulative, "meta_info": {...}}`; the last has
        meta_info["finish_reason"]. As `stream`, which it wraps."""
        async with aclosing(self.stream(obj, request, prepared)) as steps:
            async for step in steps:
                yield step.acc.cumulative_chunk(step.delta)

    async def stream(self, obj: GenerateReqInput, request: Any = None,
                     prepared: TokenizedGenerateReq | None = None) -> AsyncIterator[ResultStep]:
        """Run one prompt (n == 1); yield a step (the text added since the last one, and the
        request's accumulator) every `stream_interval` tokens and at the end.

        `request` (a starlette Request) lets a waiting request notice its client is gone.
        Closing the generator early (or cancelling it) aborts the request in the scheduler.
        """
        msg = prepared if prepared is not None else await self.prepare_one(obj)
        if self.unhealthy_reason is not None or self.draining:
            raise APIError(self.unhealthy_reason or "the server is shutting down", 503,
                           "server_error")
        if msg.rid in self._rids_in_use:
            raise bad_request(f"request id {msg.rid!r} is already in use", "rid")
        # The scheduler sees a rid unique to this call: a client that reuses its rid right
        # after an abort must not receive the aborted request's last output.
        self._seq += 1
        key = f"{msg.rid}#{self._seq}"
        state = RequestState(rid=msg.rid, acc=ResultAccumulator(
            msg.rid, msg.sampling_params, self.tokenizer, return_logprob=msg.return_logprob,
            top_logprobs_num=msg.top_logprobs_num, with_text=obj.return_text_in_logprobs,
        ))
        acc = state.acc
        self.states[key] = state
        self._rids_in_use.add(msg.rid)
        yielded_tokens = 0
        delta = ""
        try:
            self._send(msgspec.structs.replace(msg, rid=key))
            while not state.finished:
                outs = await self._wait(state, request)
                if outs is None:
                    return  # client gone: `finally` aborts
                self._record_tokens(state, sum(len(o.new_token_ids) for o in outs if not o.error))
                for out in outs:
                    delta += acc.fold(out)
                    if acc.error is not None:
                        self._record_finish(state, "error")
                        raise _generation_error(acc.error, acc.finish_reason)
                if acc.finished:
                    fr = acc.finish_reason
                    self._record_finish(state, fr.type if fr is not None else "stop")
                if acc.finished or acc.completion_tokens - yielded_tokens >= self.stream_interval:
                    yielded_tokens = acc.completion_tokens
                    step, delta = acc.step(delta), ""
                    yield step
        finally:
            self.states.pop(key, None)
            self._rids_in_use.discard(msg.rid)
            if not state.finished:
                self._record_finish(state, "abort")
                try:
                    self._send(AbortReq(rid=key))
                except Exception:  # shutting down: the scheduler goes too
                    pass

    async def _wait(self, state: RequestState, request: Any) -> list[DetokOutput] | None:
        """The next outputs of a request; None once its client has disconnected. The client
        is checked every DISCONNECT_POLL_S, also while outputs keep coming (a non-streaming
        response only notices a lost client when it asks)."""
        while True:
            now = time.monotonic()
            if request is not None and now - state.disconnect_checked_at >= DISCONNECT_POLL_S:
                state.disconnect_checked_at = now
                if await request.is_disconnected():
                    logger.info("client of request %s disconnected; aborting it", state.rid)
                    return None
            if state.inbox:
                return state.take()
            if request is None:
                await state.event.wait()
                continue
            try:
                await asyncio.wait_for(state.event.wait(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                pass

    # ---- metrics ----------------------------------------------------------------------------
    def _record_tokens(self, state: RequestState, n: int) -> None:
        if n <= 0:
            return
        now = time.monotonic()
        if state.first_token_at is None:
            state.first_token_at = now
            self.metrics.first_token(now - state.created)
            n -= 1
        if n > 0 and state.last_token_at is not None:
            self.metrics.inter_token(now - state.last_token_at, n)
        state.last_token_at = now

    def _record_finish(self, state: RequestState, finish_type: str) -> None:
        acc = state.acc
        if self.server_args.log_requests:
            log_request(state.rid, finish_type, acc.prompt_tokens, acc.completion_tokens,
                        time.monotonic() - state.created)
        self.metrics.finished(
            finish_type, time.monotonic() - state.created, acc.prompt_tokens,
            acc.completion_tokens, acc.cached_tokens,
        )


def _generation_error(error: str, reason: FinishReason | None) -> APIError:
    status = reason.status_code if reason is not None and reason.status_code else 500
    if status == 400:  # the request itself (a grammar that does not compile): the client's
        return APIError(error, 400, "invalid_request_error")
    return APIError(f"generation failed: {error}", status, "server_error")
