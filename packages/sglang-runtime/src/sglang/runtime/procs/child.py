"""What every child process of the server or the Engine does first: leave the parent's process
group, die with the parent, name itself, and stamp a heartbeat; and how it ends (`exit_child`)."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, NoReturn

HEARTBEAT_INTERVAL_S = 1.0


def _prctl_setup(name: str) -> None:
    """Linux only, best effort: SIGTERM us when the parent dies (backed up by polling the
    parent pid), and name the process `sglang:<name>` (what ps / pgrep / psutil show)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_name, pr_set_pdeathsig = 15, 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        libc.prctl(pr_set_name, f"sglang:{name}"[:15].encode(), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def child_process_setup(log_level: str, name: str, heartbeat: Any = None) -> int:
    """Common setup of the server's child processes; returns the parent's pid to watch.
    `heartbeat` (a shared double from `start_child(..., heartbeat=True)`) is stamped from now on.

    The parent decides how to shut down and stops its children itself: they leave its process
    group (a Ctrl-C or a group-wide SIGTERM reaches only the parent) and ignore SIGINT.
    """
    import multiprocessing

    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM (from the parent, or PR_SET_PDEATHSIG) unwinds the main thread, so `finally`
    # blocks close sockets; the entry point then ends through `exit_child`.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # log_level is sglang's; the root stays at WARNING so libraries' INFO (torch's
    # "FakeTensor cache stats" at exit) stays out of the user's terminal.
    logging.basicConfig(format=f"%(asctime)s [{name}] %(levelname)s %(message)s")
    logging.getLogger("sglang").setLevel(log_level.upper())
    _prctl_setup(name)
    if heartbeat is not None:
        start_heartbeat(heartbeat)
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getppid()


def start_heartbeat(value: Any) -> None:
    """Stamp `value` every second from a daemon thread: a stopped or frozen process stops
    stamping, and its launcher notices."""

    def beat() -> None:
        while True:
            value.value = time.monotonic()
            time.sleep(HEARTBEAT_INTERVAL_S)

    threading.Thread(target=beat, name="sglang-heartbeat", daemon=True).start()


def exit_child(code: int = 0) -> NoReturn:
    """End a child process now that its loop has stopped. The atexit handlers run (the
    multiprocessing finalizers unlink semaphores that tqdm created, logging flushes), but not
    the interpreter's teardown: freeing a model's tensors and modules one by one took seconds on
    a loaded machine, long enough for the parent to give up and kill the child."""
    try:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    finally:
        os._exit(code)
