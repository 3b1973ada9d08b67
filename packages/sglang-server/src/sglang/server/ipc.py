"""ZMQ plumbing between the server's processes: addresses and sockets. The messages they carry
are all in `sglang.runtime.messages`.

Topology (every receiver binds its PULL socket; senders connect a PUSH socket):

    TokenizerManager ──► scheduler ──► detokenizer ──► TokenizerManager

Addresses are `ipc://` files in a fresh temporary folder, so two servers on one machine never
meet and nothing listens on the network.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class IpcAddrs:
    scheduler_in: str
    detokenizer_in: str
    tokenizer_in: str
    folder: str


def make_ipc_addrs() -> IpcAddrs:
    folder = tempfile.mkdtemp(prefix="sglang-ipc-")
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
