"""The scheduler as its own process behind ZMQ: the server's sibling of `thread_loop.py`.

Requests come in on a PULL socket (msgpack `SchedulerInput`), each type handled by its entry in
one table (`SchedulerProcessLoop.handlers`); every step's outputs go out on a PUSH socket to the
detokenizer as one `TokenOutputBatch`. Replies to flush / stats / integrity requests travel on
the same PUSH socket, so the detokenizer forwards them in order. Before a request's first output the process echoes the request (without its prompt
ids) on that socket too: the detokenizer needs its sampling params (stop strings, special-token
handling), and one socket keeps the echo ahead of the outputs it describes.

Tensor parallelism: one such process per rank. Only rank 0 has the sockets; at the top of each
loop iteration it broadcasts the raw messages it received (and whether to stop) to every rank,
and every rank handles the same messages in the same order. The scheduler is deterministic given
its inputs and rank 0's sampled tokens (`tp_output.py`), so all ranks take the same decisions
and run the same batches without a per-step batch broadcast. A step that fails, or a lost peer,
ends the rank with a non-zero exit; the launcher then stops the rest.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from sglang.runtime.config import RuntimeArgs
from sglang.runtime.messages import (
    AbortReq,
    CheckIntegrityReq,
    FinishReason,
    FlushCacheReq,
    FlushCacheResult,
    IntegrityResult,
    SchedulerInput,
    StatsReq,
    TokenizedGenerateReq,
    TokenOutput,
    TokenOutputBatch,
)
from sglang.runtime.procs.child import child_process_setup, exit_child, threads_in_effect

logger = logging.getLogger("sglang.runtime")

# How long an idle loop blocks on its socket before checking that the parent still lives.
IDLE_POLL_MS = 500


# What the loop calls for each message type; built once per loop, one entry per type.
Handler = Callable[[Any], None]


class SchedulerProcessLoop:
    def __init__(self, runtime: Any, pull: Any, push: Any, parent_pid: int) -> None:
        import zmq

        self.rt = runtime
        self.sched = runtime.scheduler
        # None on tensor-parallel ranks other than 0: they hear from rank 0 only.
        self.pull = pull
        self.push = push
        self.parent_pid = parent_pid
        self.poller = zmq.Poller()
        if pull is not None:
            self.poller.register(pull, zmq.POLLIN)
        self.decoder = msgspec.msgpack.Decoder(SchedulerInput)
        self.encoder = msgspec.msgpack.Encoder()
        self.pending: list[TokenOutput] = []
        self.idle_check_failures = 0
        self.last_failure = ""
        # Something changed the KV state since the last idle check (an add or an abort).
        self.dirty = False
        self.handlers: dict[type, Handler] = {
            TokenizedGenerateReq: self.on_generate,
            AbortReq: self.on_abort,
            FlushCacheReq: self.on_flush_cache,
            StatsReq: self.on_stats,
            CheckIntegrityReq: self.on_check_integrity,
        }

    # ---- inputs ---------------------------------------------------------------------------
    def receive(self, timeout_ms: int) -> list[bytes]:
        """The raw messages waiting on the socket (blocking up to timeout_ms for the first)."""
        import zmq

        frames: list[bytes] = []
        if not self.poller.poll(timeout_ms):
            return frames
        while True:
            try:
                frames.append(self.pull.recv(zmq.NOBLOCK))
            except zmq.Again:
                return frames

    def drain(self, timeout_ms: int) -> bool:
        """Handle what arrived; True when the loop must stop."""
        self.handle_frames(self.receive(timeout_ms))
        return False

    def handle_frames(self, frames: list[bytes]) -> None:
        for raw in frames:
            try:
                msg = self.decoder.decode(raw)
            except msgspec.DecodeError:
                logger.error("scheduler: dropped an undecodable message:\n%s", traceback.format_exc())
                continue
            self.handle(msg)

    def handle(self, msg: Any) -> None:
        self.handlers[type(msg)](msg)

    def on_generate(self, msg: TokenizedGenerateReq) -> None:
        from sglang.runtime.scheduler.request import make_req

        # The echo: sampling params for the detokenizer, ahead of any output.
        self.send(msgspec.structs.replace(msg, input_ids=[]))
        try:
            self.sched.add_request(make_req(msg, self.rt.device))
        except Exception as e:  # refused (ValueError: the request's fault) or a bug
            status = 400 if isinstance(e, ValueError) else 500
            if status == 500:
                logger.error("scheduler: adding %s failed:\n%s", msg.rid,
                             traceback.format_exc())
            self.pending.append(TokenOutput(
                rid=msg.rid, new_token_ids=[], finished=True, error=str(e),
                finish_reason=FinishReason.abort(str(e), status),
                prompt_tokens=len(msg.input_ids),
            ))
        self.dirty = True

    def on_abort(self, msg: AbortReq) -> None:
        out = self.sched.abort(msg.rid)
        if out is not None:
            self.pending.append(out)
        self.dirty = True

    def on_flush_cache(self, msg: FlushCacheReq) -> None:
        ok = self.sched.flush_cache()
        self.send(FlushCacheResult(
            success=ok,
            message="cache flushed" if ok else "not flushed: requests are still running",
        ))

    def on_stats(self, msg: StatsReq) -> None:
        self.send(self.sched.stats())

    def on_check_integrity(self, msg: CheckIntegrityReq) -> None:
        self.send(self.integrity())

    # ---- outputs --------------------------------------------------------------------------
    def send(self, msg: Any) -> None:
        if self.push is not None:
            self.push.send(self.encoder.encode(msg), copy=False)

    def flush_outputs(self) -> None:
        if self.push is None:
            self.pending = []
        elif self.pending:
            self.send(TokenOutputBatch(outputs=self.pending))
            self.pending = []

    # ---- integrity ------------------------------------------------------------------------
    def integrity(self) -> IntegrityResult:
        stats = self.sched.stats()
        try:
            self.sched.check_integrity()
            ok, message = True, ""
        except AssertionError as e:
            ok, message = False, str(e) or "integrity check failed"
        return IntegrityResult(
            ok=ok, message=message, idle=not self.sched.has_work,
            kv_used_tokens=stats.kv_used_tokens, idle_check_failures=self.idle_check_failures,
            last_failure=self.last_failure,
        )

    def idle_check(self) -> None:
        """The scheduler checks itself when a step leaves it idle; aborts and rejected adds
        don't step, so the loop checks after those too."""
        self.dirty = False
        try:
            self.sched.check_integrity()
        except AssertionError as e:
            self.record_failure(str(e))

    def record_failure(self, message: str) -> None:
        self.idle_check_failures += 1
        self.last_failure = message
        logger.error("KV integrity check failed: %s", message)

    # ---- the loop -------------------------------------------------------------------------
    def parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    def step(self) -> None:
        try:
            self.pending.extend(self.sched.step())
        except AssertionError as e:
            # step() runs the integrity check when it ends idle; a failure there is a bug in
            # the accounting, not in the requests (they have already received their outputs).
            if self.sched.has_work:
                self.fail_all(traceback.format_exc())
            else:
                self.record_failure(str(e))
        except Exception:
            self.fail_all(traceback.format_exc())

    def fail_all(self, tb: str) -> None:
        """A step crashed: every request in flight gets the error; the loop keeps serving."""
        logger.error("scheduler step failed:\n%s", tb)
        sched = self.sched
        error = tb.strip().splitlines()[-1]
        for req in [*sched.waiting, *sched.active_requests()]:
            req.finish_reason = FinishReason.abort("internal error", 500)
            try:
                out = sched.finish_request(req, [])
            except Exception:  # keep failing the others; this one still gets an answer
                out = TokenOutput(rid=req.rid, new_token_ids=[], finished=True,
                                  finish_reason=req.finish_reason)
            out.error = error
            self.pending.append(out)

    def run_forever(self) -> None:
        while self.parent_alive():
            if self.drain(0 if self.sched.has_work else IDLE_POLL_MS):
                return
            if self.sched.has_work:
                self.step()
            elif self.dirty:
                self.idle_check()
            self.flush_outputs()
        logger.warning("scheduler: the server process is gone; exiting")


def _sockets(in_addr: str, out_addr: str) -> tuple[Any, Any, Any]:
    import zmq

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)
    pull.bind(in_addr)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(out_addr)
    return ctx, pull, push


def run_scheduler_process(
    args: RuntimeArgs,
    in_addr: str,
    out_addr: str,
    ready: Connection,
    tp_rank: int = 0,
    heartbeat: Any = None,
) -> None:
    """Entry point of a scheduler process (one per tensor-parallel rank; rank 0 owns the
    sockets): build, report ready (or the traceback), serve. `heartbeat`: a shared double
    (multiprocessing.Value) stamped with time.monotonic() every second."""
    tp = args.tp_size > 1
    parent = child_process_setup(args.log_level, f"tp{tp_rank}" if tp else "sched", heartbeat)
    ctx = None
    try:
        from sglang.runtime.builder import build_runtime

        runtime = build_runtime(args, tp_rank)
        pull = push = None
        if tp_rank == 0:
            ctx, pull, push = _sockets(in_addr, out_addr)
        if tp:
            from sglang.runtime.procs.tp_loop import TPSchedulerLoop

            loop: SchedulerProcessLoop = TPSchedulerLoop(runtime, pull, push, parent)
        else:
            loop = SchedulerProcessLoop(runtime, pull, push, parent)
    except BaseException:
        ready.send({"ok": False, "error": traceback.format_exc()})
        ready.close()
        raise SystemExit(1) from None
    ready.send({
        "ok": True,
        "tp_rank": tp_rank,
        "context_len": runtime.context_len,
        "vocab_size": int(runtime.config.vocab_size),
        "hidden_size": int(runtime.config.hidden_size),
        # An embedding model's pooling (None: generation); the server reports it.
        "pooling": runtime.scheduler.pooling,
        "kv_total_tokens": runtime.scheduler.kv.num_slots,
        "max_running_requests": runtime.scheduler.max_running,
        "device": str(runtime.device),
        "threads": threads_in_effect(),
    })
    ready.close()
    code = 0
    try:
        if tp:
            from sglang.runtime.procs.tp_loop import run_tp_loop

            run_tp_loop(loop, ctx)  # type: ignore[arg-type]
        else:
            try:
                loop.run_forever()
            finally:
                if ctx is not None:
                    ctx.destroy(linger=0)
    except SystemExit as e:  # SIGTERM, or a rank's own exit code
        code = e.code if isinstance(e.code, int) else 0
    except BaseException:
        logger.exception("scheduler process failed")
        code = 1
    exit_child(code)
