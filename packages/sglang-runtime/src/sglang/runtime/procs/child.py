"""What every child process of the server or the Engine does first: leave the parent's process
group, die with the parent, name itself, and stamp a heartbeat; and how it ends (`exit_child`).

Also the one thread policy of the server's processes (`scheduler_threads`, `thread_env`,
`limit_this_process`): the scheduler ranks of a node share its cores; the HTTP and detokenizer
processes get one compute thread each. OpenMP pools of several processes that each size
themselves to every core oversubscribe the CPU, and a matmul's threads then wait at each barrier
for a thread that is not running: on CPU that made the server decode ~6x slower than the Engine.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
# The variables that size the compute thread pools a process may load (torch's OpenMP and MKL,
# OpenBLAS under numpy); they are read once, when the library initialises.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Auxiliary processes (HTTP, detokenizer) run no heavy tensor work: one thread leaves the cores
# to the scheduler.
AUX_THREADS = 1


def available_cores() -> int:
    """The cores this process may run on (its affinity mask: taskset, cgroup cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(text) if text is not None else 0
    except ValueError:
        return None
    return value if value > 0 else None


def scheduler_threads(ranks_per_node: int = 1, environ: Mapping[str, str] = os.environ) -> int:
    """Compute threads of each scheduler rank: the user's OMP_NUM_THREADS when set, else this
    node's cores shared evenly by its ranks."""
    explicit = _positive_int(environ.get("OMP_NUM_THREADS"))
    if explicit is not None:
        return explicit
    return max(1, available_cores() // max(1, ranks_per_node))


def thread_env(threads: int, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment a process should start with to use `threads` compute threads.

    OpenMP workers sleep at once between parallel regions (OMP_WAIT_POLICY=PASSIVE, unless the
    user chose a policy): spinning workers of a team as large as the cores starve the HTTP and
    detokenizer processes and whatever else runs, and every barrier then waits a time slice for
    a descheduled thread. Measured on a loaded 2-core machine (docs/benchmarks.md): 48 tokens in
    64 s spinning, 6.9 s passive. The tokenizers' Rust pool is off too: batch encodes in the
    HTTP process would otherwise spread over every core (and it warns after a fork)."""
    env = {var: str(threads) for var in THREAD_ENV_VARS}
    env["OMP_WAIT_POLICY"] = environ.get("OMP_WAIT_POLICY") or "PASSIVE"
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


@contextmanager
def spawned_with(env: Mapping[str, str]) -> Iterator[None]:
    """Set `env` in os.environ while a child is spawned (it copies the environment at exec,
    before any library reads it), then restore ours."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def limit_this_process(threads: int = AUX_THREADS) -> None:
    """Size this process's own pools: the environment for libraries not loaded yet, and torch's
    pool if torch is already loaded."""
    os.environ.update(thread_env(threads))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def threads_in_effect() -> int:
    """This process's compute threads: torch's pool if torch is loaded, else what the
    environment would give it."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    return _positive_int(os.environ.get("OMP_NUM_THREADS")) or available_cores()
