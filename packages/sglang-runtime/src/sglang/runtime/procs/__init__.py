"""The runtime's processes: the scheduler process loop (one per tensor-parallel rank), the
Engine's in-process and multi-process schedulers, child-process setup and supervision.

This package is public to the server: it re-exports what the launcher and the detokenizer
process need, from modules that stay light to import (no torch). The rest is imported from
its module inside the runtime: `scheduler_proc` (the ZMQ loop and its entry point), `tp_loop`
(a tensor-parallel rank's loop), `tp_output` (rank 0's tokens for every rank), `remote`
(`RemoteScheduler`) and `thread_loop` (`SchedulerThread`).
"""

from sglang.runtime.procs.child import (
    AUX_THREADS,
    child_process_setup,
    exit_child,
    limit_this_process,
    scheduler_threads,
    threads_in_effect,
)
from sglang.runtime.procs.supervisor import (
    Child,
    StartupError,
    find_failure,
    start_child,
    start_ranks,
    stop_children,
    wait_ready,
)

__all__ = [
    "AUX_THREADS",
    "Child",
    "StartupError",
    "child_process_setup",
    "exit_child",
    "find_failure",
    "limit_this_process",
    "scheduler_threads",
    "start_child",
    "start_ranks",
    "stop_children",
    "threads_in_effect",
    "wait_ready",
]
