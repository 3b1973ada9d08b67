"""Child processes that report ready, and a watch over them: used by the server's launcher for
its scheduler ranks and detokenizer, and by the Engine for its tensor-parallel ranks.

A child gets the write end of a pipe as its last positional argument and sends {"ok": True, ...}
or {"ok": False, "error": traceback}. Every scheduler rank (at any tp) and the server's
detokenizer also stamp a shared heartbeat from a daemon thread, so a process that is stopped
(SIGSTOP) or frozen is noticed like one that died, while a busy one (a long prefill, a CUDA graph
capture) keeps stamping. When several ranks end at once,
`find_failure` names the one that caused it, not the ranks that merely lost contact with it.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from sglang.runtime.config import RuntimeArgs
from sglang.runtime.procs.child import scheduler_threads, spawned_with, thread_env

CHILD_STOP_TIMEOUT_S = 5.0
# Exit codes of a scheduler rank: it lost contact with another rank (which is the culprit), or
# its step failed.
PEER_LOST_EXIT = 3
STEP_FAILED_EXIT = 4


class StartupError(Exception):
    """A child failed to start; the message says why."""


@dataclass
class Child:
    name: str
    proc: Any  # multiprocessing.Process
    conn: Any  # the parent's end of the ready pipe
    info: dict[str, Any] | None = None
    heartbeat: Any = None  # multiprocessing.Value("d"): the child's last time.monotonic()
    # A tensor-parallel rank whose rank 0 runs beside it: it stops when rank 0 tells it to,
    # so it is signalled only after the others are gone.
    follower: bool = False


def start_child(
    ctx: Any, name: str, target: Any, args: tuple, kwargs: dict[str, Any] | None = None,
    heartbeat: bool = False, threads: int | None = None,
) -> Child:
    """Start `target(*args, ready_conn, **kwargs)` in a process; `threads`: the compute threads
    it starts with (None: the environment it inherits)."""
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    kwargs = dict(kwargs or {})
    beat = None
    if heartbeat:
        beat = ctx.Value("d", time.monotonic(), lock=False)
        kwargs["heartbeat"] = beat
    proc = ctx.Process(target=target, args=(*args, child_conn), kwargs=kwargs,
                       name=f"sglang-{name.replace(' ', '-')}")
    with spawned_with(thread_env(threads) if threads is not None else {}):
        proc.start()
    child_conn.close()  # so recv() sees EOF if the child dies without a word
    return Child(name, proc, parent_conn, heartbeat=beat)


def wait_ready(children: list[Child]) -> None:
    """Until every child reported ready; StartupError naming the first that failed."""
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


def stop_children(children: list[Child], timeout: float = CHILD_STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL whoever is left after `timeout`. Followers get the SIGTERM only
    once the others have exited (rank 0 has told them to stop by then)."""
    deadline = time.monotonic() + timeout
    leaders = [c for c in children if not c.follower]
    for group in (leaders, [c for c in children if c.follower]):
        for child in group:
            if child.proc.is_alive():
                child.proc.terminate()
        for child in group:
            child.proc.join(max(deadline - time.monotonic(), 0.1))
    for child in children:
        if child.proc.is_alive():
            logging.getLogger("sglang").warning("%s process did not stop; killing it", child.name)
            child.proc.kill()
            child.proc.join(2)


def find_failure(children: list[Child], hang_timeout: float) -> tuple[Child, str] | None:
    """The child that died or hung (after start-up), with a message naming it; None if all
    are well."""
    dead = [c for c in children if not c.proc.is_alive()]
    culprits = [c for c in dead if c.proc.exitcode != PEER_LOST_EXIT]
    if culprits:
        c = culprits[0]
        return c, f"the {c.name} process died (exit code {c.proc.exitcode})"
    now = time.monotonic()
    for c in children:
        if c.heartbeat is not None and c.info is not None and c.proc.is_alive():
            silent = now - c.heartbeat.value
            if silent > hang_timeout:
                return c, f"the {c.name} process stopped responding (no heartbeat for {silent:.0f} s)"
    if dead:
        c = dead[0]
        return c, (f"the {c.name} process lost contact with another tensor-parallel rank "
                   "(one on another node died or hung)")
    return None


def _free_local_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def start_ranks(
    ctx: Any, args: RuntimeArgs, in_addr: str, out_addr: str, threads: int | None = None
) -> list[Child]:
    """Start this node's scheduler ranks (rank 0, on node 0, binds `in_addr` and pushes to
    `out_addr`). A one-node group without dist_init_addr meets on a free local port. `threads`:
    each rank's compute threads (default: the node's cores shared by its ranks)."""
    from sglang.runtime.procs.scheduler_proc import run_scheduler_process

    if args.tp_size > 1 and args.dist_init_addr is None:
        args = msgspec.structs.replace(args, dist_init_addr=_free_local_addr())
    tp = args.tp_size > 1
    if threads is None:
        threads = scheduler_threads(args.ranks_per_node)
    children = []
    for rank in args.node_tp_ranks:
        child = start_child(
            ctx, f"tp rank {rank} scheduler" if tp else "scheduler", run_scheduler_process,
            (args, in_addr, out_addr), {"tp_rank": rank}, heartbeat=True, threads=threads,
        )
        child.follower = rank > 0 and args.node_rank == 0
        children.append(child)
    return children
