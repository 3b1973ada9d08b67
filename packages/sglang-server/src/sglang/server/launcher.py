"""Starts the server: scheduler and detokenizer processes, then uvicorn with the app.

Lifecycle guarantees:
- each child reports ready or its traceback; a failed start prints it and exits 1;
- a watchdog notices a child that dies, marks the server unhealthy and exits 1 within seconds;
- SIGTERM / SIGINT: new requests get 503 (and the listener closes), running requests get up to
  `graceful_shutdown_timeout` seconds, then the children are stopped and the server exits 0;
- children also exit when this process dies (PR_SET_PDEATHSIG plus polling their parent pid),
  so no path leaves orphans.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from sglang.server.args import ServerArgs
from sglang.server.ipc import IpcAddrs, make_ipc_addrs

logger = logging.getLogger("sglang.server")

WATCHDOG_INTERVAL_S = 0.5
# After a child died: how long the server may take to stop on its own before it is cut short.
FORCED_EXIT_AFTER_S = 5.0
CHILD_STOP_TIMEOUT_S = 5.0


class StartupError(Exception):
    """A child (or the tokenizer) failed to start; the message says why."""


class _Interrupted(BaseException):
    """SIGTERM/SIGINT during start-up: unwind through the `finally` that stops the children."""


@dataclass
class Child:
    name: str
    proc: Any  # multiprocessing.Process
    conn: Any  # the parent's end of the ready pipe
    info: dict[str, Any] | None = None


def _start_child(ctx: Any, name: str, target: Any, args: tuple) -> Child:
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(*args, child_conn), name=f"sglang-{name}")
    proc.start()
    child_conn.close()  # so recv() sees EOF if the child dies without a word
    return Child(name, proc, parent_conn)


def _wait_ready(children: list[Child]) -> None:
    waiting = list(children)
    while waiting:
        for child in list(waiting):
            if child.conn.poll(0.2):
                try:
                    msg = child.conn.recv()
                except EOFError:
                    msg = {"ok": False, "error": f"exited with code {child.proc.exitcode} "
                           "before reporting ready"}
                if not msg.get("ok"):
                    raise StartupError(f"the {child.name} process failed to start:\n{msg['error']}")
                child.info = msg
                waiting.remove(child)
            elif not child.proc.is_alive():
                raise StartupError(
                    f"the {child.name} process died during start-up "
                    f"(exit code {child.proc.exitcode})"
                )


def _stop_children(children: list[Child]) -> None:
    for child in children:
        if child.proc.is_alive():
            child.proc.terminate()
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT_S
    for child in children:
        child.proc.join(max(deadline - time.monotonic(), 0.1))
        if child.proc.is_alive():
            logger.warning("%s process did not stop; killing it", child.name)
            child.proc.kill()
            child.proc.join(2)


def _check_port(host: str, port: int) -> None:
    """Fail before loading a model when the port is taken (uvicorn would find out only after)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
    except OSError as e:
        raise StartupError(f"cannot listen on {host}:{port}: {e}") from e


def _load_tokenizer(server_args: ServerArgs, folder: str) -> tuple[Any, str, str, str]:
    """(tokenizer, model_path, tokenizer_path as given, a fast-loading copy for the
    detokenizer). GGUF tokenizers take seconds to convert; the copy loads in a fraction."""
    from sglang.runtime.loading.default_model import default_model_path
    from sglang.runtime.loading.source import load_tokenizer

    rt = server_args.runtime
    model_path = rt.model_path or default_model_path()
    tokenizer_path = rt.tokenizer_path or model_path
    try:
        tokenizer = load_tokenizer(tokenizer_path)
    except Exception as e:
        raise StartupError(f"could not load the tokenizer from {tokenizer_path}: {e}") from e
    copy = os.path.join(folder, "tokenizer-files")
    try:
        tokenizer.save_pretrained(copy)
    except Exception as e:  # the original still works, only slower
        logger.warning("could not save a tokenizer copy (%s); the detokenizer loads the original", e)
        copy = tokenizer_path
    return tokenizer, model_path, tokenizer_path, copy


class _Uvicorn(uvicorn.Server):
    """uvicorn.Server whose exit signals also start draining (503 for new requests)."""

    def __init__(self, config: uvicorn.Config, on_exit_signal: Any) -> None:
        super().__init__(config)
        self.on_exit_signal = on_exit_signal

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.on_exit_signal(sig)
        super().handle_exit(sig, frame)


class Watchdog(threading.Thread):
    def __init__(self, children: list[Child], on_death: Any) -> None:
        super().__init__(name="sglang-watchdog", daemon=True)
        self.children = children
        self.on_death = on_death
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(WATCHDOG_INTERVAL_S):
            for child in self.children:
                if not child.proc.is_alive():
                    self.on_death(child)
                    return


def launch_server(server_args: ServerArgs) -> int:
    """Run the server until it is stopped; returns the process exit code."""
    level = server_args.runtime.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s [server] %(levelname)s %(message)s")
    logging.getLogger("sglang").setLevel(level)
    addrs = make_ipc_addrs()
    children: list[Child] = []

    def interrupted(sig: int, frame: Any) -> None:
        raise _Interrupted(sig)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        return _serve(server_args, addrs, children)
    except StartupError as e:
        print(f"sglang: {e}", file=sys.stderr, flush=True)
        return 1
    except _Interrupted:
        logger.warning("interrupted during start-up")
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # no second signal cuts the clean-up short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_children(children)
        shutil.rmtree(addrs.folder, ignore_errors=True)


def _serve(server_args: ServerArgs, addrs: IpcAddrs, children: list[Child]) -> int:
    from sglang.runtime.scheduler.process import run_scheduler_process
    from sglang.server.detokenizer_process import run_detokenizer_process

    _check_port(server_args.host, server_args.port)
    ctx = multiprocessing.get_context("spawn")
    rt = server_args.runtime
    # The scheduler loads the model while this process loads the tokenizer.
    children.append(_start_child(ctx, "scheduler", run_scheduler_process,
                                 (rt, addrs.scheduler_in, addrs.detokenizer_in)))
    tokenizer, model_path, tokenizer_path, tok_copy = _load_tokenizer(server_args, addrs.folder)
    children.append(_start_child(ctx, "detokenizer", run_detokenizer_process,
                                 (tok_copy, rt.log_level, addrs.detokenizer_in, addrs.tokenizer_in)))
    _wait_ready(children)

    from sglang.server.app import build_app
    from sglang.server.tokenizer_manager import TokenizerManager

    try:
        tm = TokenizerManager(server_args, tokenizer, addrs, children[0].info or {},
                              model_path, tokenizer_path)
    except ValueError as e:  # e.g. an unknown --chat-template
        raise StartupError(str(e)) from e
    app = build_app(tm, server_args)
    config = uvicorn.Config(
        app, host=server_args.host, port=server_args.port, log_level=rt.log_level.lower(),
        timeout_graceful_shutdown=server_args.graceful_shutdown_timeout, access_log=False,
    )
    exit_code = 0

    def on_exit_signal(sig: int) -> None:
        if not tm.draining:
            logger.warning("received signal %d: draining running requests, then exiting", sig)
        tm.draining = True

    server = _Uvicorn(config, on_exit_signal)

    def on_death(child: Child) -> None:
        nonlocal exit_code
        if watchdog.stopped.is_set():
            return  # we are stopping the children ourselves
        exit_code = 1
        reason = (f"the {child.name} process died (exit code {child.proc.exitcode}); "
                  "the server cannot serve and is exiting")
        logger.error(reason)
        tm.unhealthy_reason = reason
        loop = tm.loop
        if loop is not None:
            loop.call_soon_threadsafe(tm.fail_all, reason)
        # A graceful stop: the requests just failed answer at once, then uvicorn exits.
        server.should_exit = True
        # Never hang: if uvicorn has not stopped on its own by then, leave anyway.
        time.sleep(FORCED_EXIT_AFTER_S)
        logger.error("server did not stop in time; exiting now")
        _stop_children(children)
        os._exit(1)

    watchdog = Watchdog(children, on_death)
    watchdog.start()
    # uvicorn re-raises the signal it handled once it has shut down; a no-op handler lets that
    # end here, so the children are stopped and the exit code is ours.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        server.run()
    finally:
        watchdog.stopped.set()
    return exit_code
