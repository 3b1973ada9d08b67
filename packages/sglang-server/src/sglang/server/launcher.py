"""Starts the server: scheduler and detokenizer processes, then uvicorn with the app.

Lifecycle guarantees:
- each child reports ready or its traceback; a failed start prints it and exits 1;
- a watchdog notices a child that dies, marks the server unhealthy and exits 1 within seconds;
- a watchdog notices a child that stops its heartbeat (every scheduler rank and the detokenizer
  stamp one, at every tp): /health turns 503, requests in flight get a 503, the stuck child is
  killed and the server exits 1, as for a dead child (a supervisor restarts it either way);
- SIGTERM / SIGINT: new requests get 503 (and the listener closes), running requests get up to
  `graceful_shutdown_timeout` seconds, then those still running get a 503 (a final SSE error
  event when streaming), the children are stopped and the server exits 0;
- the IPC folder in the temp dir goes on every exit this process lives through; one left by a
  launcher killed outright is removed by the next start (`sweep_stale_ipc_folders`);
- children also exit when this process dies (PR_SET_PDEATHSIG plus polling their parent pid),
  so no path leaves orphans.

Tensor parallelism: one scheduler process per rank of this node (`--tp / --nnodes` of them); a
rank that dies, or stops its heartbeat, is named and ends the server. Only node 0 serves HTTP;
another node (`--node-rank` > 0) runs its ranks until they end, which they do when node 0 goes.
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
from typing import Any

import uvicorn

from sglang.runtime.procs import (
    AUX_THREADS,
    Child,
    StartupError,
    find_failure,
    limit_this_process,
    scheduler_threads,
    start_child,
    start_ranks,
    stop_children,
    threads_in_effect,
    wait_ready,
)
from sglang.server.args import ServerArgs
from sglang.server.ipc import IpcAddrs, make_ipc_addrs, sweep_stale_ipc_folders
from sglang.server.request_log import enable_request_log

logger = logging.getLogger("sglang.server")

WATCHDOG_INTERVAL_S = 0.5
# After a child died: how long the server may take to stop on its own before it is cut short.
FORCED_EXIT_AFTER_S = 5.0
# uvicorn cancels what still runs this long after our own drain deadline, which answers first.
DRAIN_ANSWER_MARGIN_S = 5.0


class _Interrupted(BaseException):
    """SIGTERM/SIGINT during start-up: unwind through the `finally` that stops the children."""


def _check_port(host: str, port: int) -> None:
    """Fail before loading a model when the port is taken (uvicorn would find out only after)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
    except OSError as e:
        raise StartupError(f"cannot listen on {host}:{port}: {e}") from e


def _load_tokenizer(server_args: ServerArgs, folder: str) -> tuple[Any, str, str, str | None]:
    """(tokenizer, model_path, tokenizer_path as given, a fast-loading copy for the
    detokenizer). GGUF tokenizers take seconds to convert; the copy loads in a fraction.
    With skip_tokenizer_init there is none: (None, model_path, tokenizer_path, None)."""
    from sglang.runtime.loading import load_tokenizer

    rt = server_args.runtime
    model_path = _model_path(server_args)
    tokenizer_path = rt.tokenizer_path or model_path
    if rt.skip_tokenizer_init:
        return None, model_path, tokenizer_path, None
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


def _model_path(server_args: ServerArgs) -> str:
    """The model to serve, checked before any process starts: a path-like --model-path or
    --tokenizer-path that does not exist, or a missing default model, is a one-line error."""
    from sglang.runtime.loading import ModelPathError, resolve_model_paths

    rt = server_args.runtime
    try:
        return resolve_model_paths(rt.model_path, rt.tokenizer_path, flags=True)
    except ModelPathError as e:
        raise StartupError(str(e)) from None


class _Uvicorn(uvicorn.Server):
    """uvicorn.Server whose exit signals also start draining (503 for new requests)."""

    def __init__(self, config: uvicorn.Config, on_exit_signal: Any) -> None:
        super().__init__(config)
        self.on_exit_signal = on_exit_signal

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.on_exit_signal(sig)
        super().handle_exit(sig, frame)


class Watchdog(threading.Thread):
    """Calls on_failure(child, message) once, when a child dies or stops its heartbeat."""

    def __init__(self, children: list[Child], on_failure: Any, hang_timeout: float) -> None:
        super().__init__(name="sglang-watchdog", daemon=True)
        self.children = children
        self.on_failure = on_failure
        self.hang_timeout = hang_timeout
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(WATCHDOG_INTERVAL_S):
            failure = find_failure(self.children, self.hang_timeout)
            if failure is not None:
                self.on_failure(*failure)
                return


def launch_server(server_args: ServerArgs) -> int:
    """Run the server until it is stopped; returns the process exit code."""
    # The root logger stays at WARNING: --log-level is sglang's, and INFO from libraries (torch
    # dumps "FakeTensor cache stats" at exit) is noise to a user.
    logging.basicConfig(format="%(asctime)s [server] %(levelname)s %(message)s")
    logging.getLogger("sglang").setLevel(server_args.runtime.log_level.upper())
    if server_args.log_requests:
        enable_request_log()
    sweep_stale_ipc_folders()
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
        stop_children(children)
        shutil.rmtree(addrs.folder, ignore_errors=True)


def _log_threads(children: list[Child]) -> None:
    """One line with each process's compute threads as it reports them itself."""
    parts = [f"{c.name} {(c.info or {}).get('threads', '?')}" for c in children]
    parts.append(f"http {threads_in_effect()}")
    logger.info("compute threads: %s", ", ".join(parts))


def _serve(server_args: ServerArgs, addrs: IpcAddrs, children: list[Child]) -> int:
    from sglang.server.detokenizer_process import run_detokenizer_process

    rt = server_args.runtime
    ctx = multiprocessing.get_context("spawn")
    _model_path(server_args)
    # Read before this process limits its own threads (which sets OMP_NUM_THREADS here).
    rank_threads = scheduler_threads(rt.ranks_per_node)
    limit_this_process(AUX_THREADS)
    if rt.node_rank > 0:
        return _serve_ranks_only(ctx, server_args, addrs, children, rank_threads)
    _check_port(server_args.host, server_args.port)
    # The scheduler ranks load the model while this process loads the tokenizer.
    children += start_ranks(ctx, rt, addrs.scheduler_in, addrs.detokenizer_in, rank_threads)
    tokenizer, model_path, tokenizer_path, tok_copy = _load_tokenizer(server_args, addrs.folder)
    children.append(start_child(ctx, "detokenizer", run_detokenizer_process,
                                (tok_copy, rt.log_level, addrs.detokenizer_in, addrs.tokenizer_in),
                                heartbeat=True, threads=AUX_THREADS))
    wait_ready(children)
    _log_threads(children)

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
        timeout_graceful_shutdown=server_args.graceful_shutdown_timeout + DRAIN_ANSWER_MARGIN_S,
        access_log=False,
    )
    exit_code = 0

    def on_exit_signal(sig: int) -> None:
        if not tm.draining:
            logger.warning("received signal %d: draining running requests (at most %g s), "
                           "then exiting", sig, server_args.graceful_shutdown_timeout)
        tm.begin_drain(server_args.graceful_shutdown_timeout)

    server = _Uvicorn(config, on_exit_signal)

    def on_failure(child: Child, what: str) -> None:
        nonlocal exit_code
        if watchdog.stopped.is_set():
            return  # we are stopping the children ourselves
        exit_code = 1
        reason = f"{what}; the server cannot serve and is exiting"
        logger.error(reason)
        if child.proc.is_alive():  # hung: it would not answer a polite stop either
            child.proc.kill()
        tm.unhealthy_reason = reason
        loop = tm.loop
        if loop is not None:
            loop.call_soon_threadsafe(tm.fail_all, reason)
        # A graceful stop: the requests just failed answer at once, then uvicorn exits.
        server.should_exit = True
        # Never hang: if uvicorn has not stopped on its own by then, leave anyway.
        time.sleep(FORCED_EXIT_AFTER_S)
        logger.error("server did not stop in time; exiting now")
        stop_children(children)
        shutil.rmtree(addrs.folder, ignore_errors=True)
        os._exit(1)

    watchdog = Watchdog(children, on_failure, rt.rank_heartbeat_timeout)
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


def _serve_ranks_only(
    ctx: Any, server_args: ServerArgs, addrs: IpcAddrs, children: list[Child], rank_threads: int
) -> int:
    """A node other than 0: run this node's ranks until they end. They end together with node
    0 (it broadcasts the stop, or its loss breaks their collectives); exit 0 only when every
    rank stopped cleanly."""
    rt = server_args.runtime
    children += start_ranks(ctx, rt, addrs.scheduler_in, addrs.detokenizer_in, rank_threads)
    wait_ready(children)
    _log_threads(children)
    logger.info("node %d: tp ranks %s ready", rt.node_rank, rt.node_tp_ranks)
    while True:
        time.sleep(WATCHDOG_INTERVAL_S)
        if all(c.proc.exitcode == 0 for c in children):
            logger.info("node %d: every rank stopped; exiting", rt.node_rank)
            return 0
        failure = find_failure(children, rt.rank_heartbeat_timeout)
        if failure is not None and not all(
            c.proc.exitcode == 0 for c in children if not c.proc.is_alive()
        ):
            logger.error("node %d: %s; exiting", rt.node_rank, failure[1])
            return 1
