"""The Engine's scheduler under tensor parallelism: rank processes behind ZMQ.

Same interface as `SchedulerThread` (submit / abort / flush_cache / check_integrity /
shutdown), but the scheduler runs as one process per rank (`scheduler_proc.py`), rank 0 owning the
sockets, as in the server. A watchdog thread notices a rank that dies or stops its heartbeat:
every request in flight then fails with a message naming the rank, the other ranks are stopped,
and later calls raise.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import msgspec

from sglang.runtime.config import RuntimeArgs
from sglang.runtime.messages import (
    AbortReq,
    CheckIntegrityReq,
    ControlReply,
    FinishReason,
    FlushCacheReq,
    FlushCacheResult,
    IntegrityResult,
    SchedulerOutput,
    TokenizedGenerateReq,
    TokenOutput,
    TokenOutputBatch,
)
from sglang.runtime.procs.supervisor import (
    Child,
    find_failure,
    start_ranks,
    stop_children,
    wait_ready,
)
from sglang.runtime.scheduler.request import Req

logger = logging.getLogger("sglang.runtime")

Sink = Callable[[TokenOutput], None]
WATCH_INTERVAL_S = 0.5
RECV_POLL_MS = 200


class RankFailure(RuntimeError):
    """A tensor-parallel rank died or hung; the engine cannot serve any more."""


class RemoteScheduler:
    def __init__(self, args: RuntimeArgs) -> None:
        import zmq

        if args.node_rank != 0:
            raise ValueError("sgl.Engine runs node 0 of a multi-node group; start the other "
                             "nodes with `python -m sglang.launch_server --node-rank N`")
        self._folder = tempfile.mkdtemp(prefix="sglang-engine-")
        in_addr = f"ipc://{Path(self._folder) / 'scheduler'}"
        out_addr = f"ipc://{Path(self._folder) / 'engine'}"
        self._zmq = zmq.Context()
        self._pull = self._zmq.socket(zmq.PULL)
        self._pull.setsockopt(zmq.RCVHWM, 0)
        self._pull.bind(out_addr)
        self._push = self._zmq.socket(zmq.PUSH)
        self._push.setsockopt(zmq.SNDHWM, 0)
        self._push.setsockopt(zmq.LINGER, 0)
        self._push.connect(in_addr)
        self._send_lock = threading.Lock()
        self._control_lock = threading.Lock()
        self._sinks: dict[str, Sink] = {}
        self._sinks_lock = threading.Lock()
        self._replies: dict[type, queue.Queue[Any]] = {
            t: queue.Queue() for t in get_args(ControlReply)
        }
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(SchedulerOutput)
        # What the receive thread does with each message type the ranks send.
        self._handlers: dict[type, Callable[[Any], None]] = {
            TokenOutputBatch: self._on_outputs,
            # The echo of a request, for the server's detokenizer: the Engine has no use for it.
            TokenizedGenerateReq: lambda msg: None,
            **{t: self._on_reply for t in self._replies},
        }
        self.failure: str | None = None
        self._stopping = threading.Event()
        self.hang_timeout = args.rank_heartbeat_timeout
        self.children: list[Child] = []
        try:
            self.children = start_ranks(
                multiprocessing.get_context("spawn"), args, in_addr, out_addr
            )
        except BaseException:
            self._close()
            raise
        self.info: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []

    def wait_ready(self) -> None:
        """Until every rank has built its model (the caller may work meanwhile); rank 0's
        report lands in `info`."""
        try:
            wait_ready(self.children)
        except BaseException:
            self._close()
            raise
        self.info = self.children[0].info or {}
        self._threads = [
            threading.Thread(target=self._receive_loop, name="sglang-engine-recv", daemon=True),
            threading.Thread(target=self._watch_loop, name="sglang-engine-watch", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # ---- requests -------------------------------------------------------------------------
    def _send(self, msg: Any) -> None:
        if self.failure is not None:
            raise RankFailure(self.failure)
        with self._send_lock:
            self._push.send(self._encoder.encode(msg))

    def submit(self, req: Req, sink: Sink) -> None:
        with self._sinks_lock:
            self._sinks[req.rid] = sink
        self._send(TokenizedGenerateReq(
            rid=req.rid, input_ids=req.prompt_ids, sampling_params=req.params,
            return_logprob=req.return_logprob, logprob_start_len=req.logprob_start_len,
            top_logprobs_num=req.top_logprobs_num, mm_items=req.mm_items, embed=req.embed,
            stream=req.stream,
        ))

    def abort(self, rid: str) -> None:
        if self.failure is None:
            self._send(AbortReq(rid=rid))

    def _control(self, msg: Any, reply: type) -> Any:
        with self._control_lock:
            self._send(msg)
            while True:
                try:
                    return self._replies[reply].get(timeout=WATCH_INTERVAL_S)
                except queue.Empty:
                    if self.failure is not None:
                        raise RankFailure(self.failure) from None

    def flush_cache(self) -> bool:
        return bool(self._control(FlushCacheReq(), FlushCacheResult).success)

    def check_integrity(self) -> IntegrityResult:
        """Every rank's KV accounting, and that the ranks agree; AssertionError otherwise."""
        res: IntegrityResult = self._control(CheckIntegrityReq(), IntegrityResult)
        if not res.ok:
            raise AssertionError(res.message)
        if res.idle_check_failures:
            raise AssertionError(f"an idle integrity check failed: {res.last_failure}")
        return res

    # ---- outputs and failures -------------------------------------------------------------
    def _receive_loop(self) -> None:
        import zmq

        while not self._stopping.is_set():
            if not self._pull.poll(RECV_POLL_MS):
                continue
            try:
                msg = self._decoder.decode(self._pull.recv(zmq.NOBLOCK))
            except zmq.ZMQError:
                return  # closed by shutdown
            self._handlers[type(msg)](msg)

    def _on_outputs(self, batch: TokenOutputBatch) -> None:
        for out in batch.outputs:
            self._dispatch(out)

    def _on_reply(self, msg: Any) -> None:
        self._replies[type(msg)].put(msg)

    def _dispatch(self, out: TokenOutput) -> None:
        with self._sinks_lock:
            sink = self._sinks.pop(out.rid, None) if out.finished else self._sinks.get(out.rid)
        if sink is not None:
            sink(out)

    def _watch_loop(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL_S):
            failure = find_failure(self.children, self.hang_timeout)
            if failure is not None:
                self._on_failure(*failure)
                return

    def _on_failure(self, child: Child, what: str) -> None:
        self.failure = f"{what}; the engine cannot serve any more"
        logger.error(self.failure)
        if child.proc.is_alive():  # hung: it would not answer a polite stop either
            child.proc.kill()
        stop_children(self.children)
        with self._sinks_lock:
            sinks, self._sinks = self._sinks, {}
        for rid, sink in sinks.items():
            sink(TokenOutput(rid=rid, new_token_ids=[], finished=True, error=self.failure,
                             finish_reason=FinishReason.abort(self.failure)))

    # ---- shutdown -------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop the ranks (rank 0 tells the others to stop between steps)."""
        self._stopping.set()
        stop_children(self.children)
        for t in self._threads:
            t.join(timeout=5)
        self._close()

    def _close(self) -> None:
        stop_children(self.children)
        self._zmq.destroy(linger=0)
        shutil.rmtree(self._folder, ignore_errors=True)
