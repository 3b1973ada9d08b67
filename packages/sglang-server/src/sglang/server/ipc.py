"""ZMQ plumbing between the server's processes: addresses and sockets. The messages they carry
are all in `sglang.runtime.messages`.

Topology (every receiver binds its PULL socket; senders connect a PUSH socket):

    TokenizerManager ──► scheduler ──► detokenizer ──► TokenizerManager

Addresses are `ipc://` files in a fresh temporary folder, so two servers on one machine never
meet and nothing listens on the network. The folder's name carries the launcher's pid: the
launcher removes it on every exit it lives through, and a later start removes those whose
launcher is gone (killed with SIGKILL, say).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("sglang.server")

IPC_PREFIX = "sglang-ipc-"
# sglang-ipc-<owner pid>-<random>; older folders without a pid are left alone.
_OWNED = re.compile(rf"^{IPC_PREFIX}(\d+)-")


@dataclass(frozen=True)
class IpcAddrs:
    scheduler_in: str
    detokenizer_in: str
    tokenizer_in: str
    folder: str


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale_ipc_folders(tmp_dir: str | None = None) -> list[str]:
    """Remove the IPC folders of launchers that are gone; returns the paths removed. Folders of
    running servers (their pid lives) and of other users (not ours to remove) stay."""
    root = tmp_dir or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    uid = os.getuid()
    for name in names:
        m = _OWNED.match(name)
        path = os.path.join(root, name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid != uid or not stat.S_ISDIR(st.st_mode):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        logger.info("removed %d IPC folder(s) left by servers that were killed", len(removed))
    return removed


def make_ipc_addrs() -> IpcAddrs:
    folder = tempfile.mkdtemp(prefix=f"{IPC_PREFIX}{os.getpid()}-")
    # ipc:// paths are limited to ~107 bytes (sun_path); mkdtemp under /tmp stays far below.
    return IpcAddrs(
        scheduler_in=f"ipc://{os.path.join(folder, 'scheduler')}",
        detokenizer_in=f"ipc://{os.path.join(folder, 'detokenizer')}",
        tokenizer_in=f"ipc://{os.path.join(folder, 'tokenizer')}",
        folder=folder,
    )


def pull_socket(ctx: Any, addr: str) -> Any:
    import zmq

    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.bind(addr)
    return sock


def push_socket(ctx: Any, addr: str) -> Any:
    """A PUSH socket with no high-water mark: a burst of outputs waits in memory instead of
    blocking the sender (the scheduler must never stall on a slow reader)."""
    import zmq

    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(addr)
    return sock
