"""What every child process of the server or the Engine does first: leave the parent's process
group, die with the parent, name itself, and (scheduler ranks) stamp a heartbeat."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

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


def child_process_setup(log_level: str, name: str) -> int:
    """Common setup of the server's child processes; returns the parent's pid to watch.

    The parent decides how to shut down and stops its children itself: they leave its process
    group (a Ctrl-C or a group-wide SIGTERM reaches only the parent) and ignore SIGINT.
    """
    import multiprocessing

    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM (from the parent, or PR_SET_PDEATHSIG) exits through the interpreter's normal
    # shutdown, so finalizers run (e.g. semaphores that tqdm created get unlinked).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # log_level is sglang's; the root stays at WARNING so libraries' INFO (torch's
    # "FakeTensor cache stats" at exit) stays out of the user's terminal.
    logging.basicConfig(format=f"%(asctime)s [{name}] %(levelname)s %(message)s")
    logging.getLogger("sglang").setLevel(log_level.upper())
    _prctl_setup(name)
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
