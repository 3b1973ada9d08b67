"""The detokenizer process: token ids from the scheduler in, text deltas to the tokenizer manager out.

It holds only a tokenizer. The scheduler echoes each request (its sampling params, no prompt)
before the request's first output on the same socket, so an `IncrementalDetokenizer` with the
right stop strings and special-token handling exists by the time tokens arrive.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, get_args

import msgspec

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.detokenizer import IncrementalDetokenizer
from sglang.runtime.messages import (
    ControlReply,
    DetokOutput,
    DetokOutputBatch,
    FinishReason,
    SchedulerOutput,
    TokenizedGenerateReq,
    TokenOutput,
    TokenOutputBatch,
)
from sglang.runtime.procs import child_process_setup, exit_child, threads_in_effect
from sglang.server.ipc import pull_socket, push_socket

logger = logging.getLogger("sglang.server")

IDLE_POLL_MS = 500


class DetokenizerState:
    """Per-request incremental detokenizers, keyed by rid; a request's entry goes with its
    final output."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.detoks: dict[str, IncrementalDetokenizer] = {}

    def register(self, req: TokenizedGenerateReq) -> None:
        self.detoks[req.rid] = IncrementalDetokenizer(self.tokenizer, req.sampling_params)

    def convert(self, out: TokenOutput) -> DetokOutput:
        detok = self.detoks.pop(out.rid, None) if out.finished else self.detoks.get(out.rid)
        text = ""
        if out.error is None:
            if detok is None:
                # Never expected (the echo comes first); default params still give text.
                logger.warning("detokenizer: output for unknown request %s", out.rid)
                detok = IncrementalDetokenizer(self.tokenizer, SamplingParams())
                if not out.finished:
                    self.detoks[out.rid] = detok
            text = detok.add(out.new_token_ids, out.finish_reason, out.finished)
        return DetokOutput(**msgspec.structs.asdict(out), text=text)


class DetokenizerLoop:
    """Reads what the scheduler sends and hands each message to the entry of its type in
    `handlers`: echoes register a request, output batches go out with their text, control
    replies go through untouched (in order, as raw bytes)."""

    def __init__(self, tokenizer: Any, pull: Any, push: Any, parent_pid: int) -> None:
        self.state = DetokenizerState(tokenizer)
        self.pull = pull
        self.push = push
        self.parent_pid = parent_pid
        self.decoder = msgspec.msgpack.Decoder(SchedulerOutput)
        self.encoder = msgspec.msgpack.Encoder()
        self.handlers: dict[type, Callable[[Any, bytes], None]] = {
            TokenizedGenerateReq: self.on_echo,
            TokenOutputBatch: self.on_outputs,
            **{t: self.forward for t in get_args(ControlReply)},
        }

    def on_echo(self, msg: TokenizedGenerateReq, raw: bytes) -> None:
        self.state.register(msg)

    def on_outputs(self, msg: TokenOutputBatch, raw: bytes) -> None:
        outs = []
        for out in msg.outputs:
            try:
                outs.append(self.state.convert(out))
            except Exception:  # a bad token id must fail one request, not the process
                tb = traceback.format_exc()
                logger.error("detokenizer: request %s failed:\n%s", out.rid, tb)
                self.state.detoks.pop(out.rid, None)
                outs.append(DetokOutput(
                    rid=out.rid, new_token_ids=[], finished=True,
                    finish_reason=FinishReason.abort("detokenization failed", 500),
                    error=tb.strip().splitlines()[-1],
                ))
        self.push.send(self.encoder.encode(DetokOutputBatch(outputs=outs)), copy=False)

    def forward(self, msg: Any, raw: bytes) -> None:
        self.push.send(raw)

    def run_forever(self) -> None:
        import os

        import zmq

        poller = zmq.Poller()
        poller.register(self.pull, zmq.POLLIN)
        while os.getppid() == self.parent_pid:
            if not poller.poll(IDLE_POLL_MS):
                continue
            raw = self.pull.recv()
            try:
                msg = self.decoder.decode(raw)
            except msgspec.DecodeError:
                logger.error("detokenizer: dropped an undecodable message:\n%s",
                             traceback.format_exc())
                continue
            self.handlers[type(msg)](msg, raw)
        logger.warning("detokenizer: the server process is gone; exiting")


def run_detokenizer_process(
    tokenizer_path: str | None, log_level: str, in_addr: str, out_addr: str, ready: Connection,
    heartbeat: Any = None,
) -> None:
    """Entry point: load the tokenizer, report ready (or the traceback), serve until the parent
    goes away or stops it. No tokenizer_path (skip_tokenizer_init): outputs pass through with
    text "". `heartbeat`: stamped every second, so the launcher notices a stuck process."""
    parent = child_process_setup(log_level, "detok", heartbeat)
    try:
        import zmq

        from sglang.runtime.loading import load_tokenizer

        tokenizer = None if tokenizer_path is None else load_tokenizer(tokenizer_path)
        ctx = zmq.Context()
        pull = pull_socket(ctx, in_addr)
        push = push_socket(ctx, out_addr)
    except BaseException:
        ready.send({"ok": False, "error": traceback.format_exc()})
        ready.close()
        raise SystemExit(1) from None
    ready.send({"ok": True, "threads": threads_in_effect()})
    ready.close()
    code = 0
    try:
        DetokenizerLoop(tokenizer, pull, push, parent).run_forever()
    except SystemExit as e:  # SIGTERM
        code = e.code if isinstance(e.code, int) else 0
    except BaseException:
        logger.exception("detokenizer process failed")
        code = 1
    finally:
        ctx.destroy(linger=0)
    exit_child(code)
