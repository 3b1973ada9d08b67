"""Runs a Scheduler on a background thread; callers submit requests and get outputs by callback.

The offline Engine uses this in-process loop. The server runs the same Scheduler in its own
process behind ZMQ instead.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from collections.abc import Callable

from sglang.runtime.messages import FinishReason, TokenOutput
from sglang.runtime.scheduler.request import Req
from sglang.runtime.scheduler.scheduler import Scheduler

logger = logging.getLogger("sglang.runtime")

Sink = Callable[[TokenOutput], None]


class SchedulerThread:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._commands: queue.Queue[tuple[str, object]] = queue.Queue()
        self._sinks: dict[str, Sink] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sglang-scheduler", daemon=True)
        self._thread.start()

    def submit(self, req: Req, sink: Sink) -> None:
        self._commands.put(("add", (req, sink)))

    def abort(self, rid: str) -> None:
        self._commands.put(("abort", rid))

    def call(self, fn: Callable[[Scheduler], object]) -> object:
        """Run fn on the scheduler thread (between steps) and return its result."""
        done: queue.Queue[tuple[bool, object]] = queue.Queue()
        self._commands.put(("call", (fn, done)))
        ok, value = done.get()
        if not ok:
            raise value  # type: ignore[misc]
        return value

    def shutdown(self) -> None:
        self._stop.set()
        self._commands.put(("stop", None))
        self._thread.join(timeout=30)

    def _handle(self, kind: str, payload: object) -> None:
        if kind == "add":
            req, sink = payload  # type: ignore[misc]
            try:
                self.scheduler.add_request(req)
            except ValueError as e:
                sink(TokenOutput(rid=req.rid, new_token_ids=[], finished=True, error=str(e),
                                 finish_reason=FinishReason.abort(str(e))))
                return
            self._sinks[req.rid] = sink
        elif kind == "abort":
            out = self.scheduler.abort(payload)  # type: ignore[arg-type]
            if out is not None:
                self._dispatch(out)
        elif kind == "call":
            fn, done = payload  # type: ignore[misc]
            try:
                done.put((True, fn(self.scheduler)))
            except Exception as e:  # handed to the caller's thread
                done.put((False, e))

    def _dispatch(self, out: TokenOutput) -> None:
        sink = self._sinks.pop(out.rid, None) if out.finished else self._sinks.get(out.rid)
        if sink is not None:
            sink(out)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                block = not self.scheduler.has_work
                while True:
                    kind, payload = self._commands.get(block=block)
                    if kind == "stop":
                        return
                    self._handle(kind, payload)
                    block = False
            except queue.Empty:
                pass
            if not self.scheduler.has_work:
                continue
            try:
                for out in self.scheduler.step():
                    self._dispatch(out)
            except Exception:
                self._fail_all(traceback.format_exc())

    def _fail_all(self, tb: str) -> None:
        """A step crashed: every request in flight gets the error; the loop keeps serving."""
        logger.error("scheduler step failed:\n%s", tb)
        sched = self.scheduler
        for req in [*sched.waiting, *sched.active_requests()]:
            req.finish_reason = FinishReason.abort("internal error")
            out = sched.finish_request(req, [])
            out.error = tb.strip().splitlines()[-1]
            self._dispatch(out)
