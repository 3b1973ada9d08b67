"""Helpers for the lifecycle tests (drain, watchdog, shutdown): requests that run in threads
while a test signals the server or its children, and what a server leaves in the temp dir."""

from __future__ import annotations

import glob
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from live_server import LiveServer, metric, pid_alive

# A request that runs until something stops it: far more tokens than the test waits for.
ENDLESS = {"max_new_tokens": 3000, "temperature": 0, "ignore_eos": True}
STOP_WARNING = "did not stop; killing it"


def ipc_folders(server: LiveServer) -> list[str]:
    """The server's IPC folders in the temp dir (their names carry the launcher's pid)."""
    return glob.glob(os.path.join(tempfile.gettempdir(), f"sglang-ipc-{server.proc.pid}-*"))


def in_scheduler(text: str) -> float:
    """Requests the scheduler holds (running or waiting), from a /metrics page."""
    return metric(text, "sglang_num_running_reqs") + metric(text, "sglang_num_queue_reqs")


def wait_running(server: LiveServer, n: int, timeout: float = 300) -> None:
    """Until the scheduler holds at least `n` requests (running or waiting for admission)."""
    with server.client() as c:
        deadline = time.monotonic() + timeout
        while in_scheduler(c.get("/metrics").text) < n:
            assert time.monotonic() < deadline, f"fewer than {n} requests in the scheduler"
            time.sleep(0.1)


class Call(threading.Thread):
    """One request in a thread. Non-streaming: `response`. Streaming: `events`, the decoded
    `data:` payloads (the literal "[DONE]" kept as a string); `started` is set once the first
    event arrived (or the call ended)."""

    def __init__(self, server: LiveServer, path: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.server, self.path, self.body = server, path, body
        self.response: httpx.Response | None = None
        self.status: int | None = None
        self.events: list[Any] = []
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            with self.server.client(timeout=600) as c:
                if not self.body.get("stream"):
                    self.response = c.post(self.path, json=self.body)
                    self.status = self.response.status_code
                    return
                with c.stream("POST", self.path, json=self.body) as r:
                    self.status = r.status_code
                    for line in r.iter_lines():
                        if line.startswith("data: "):
                            data = line[len("data: "):]
                            self.events.append(data if data == "[DONE]" else json.loads(data))
                            self.started.set()
        except BaseException as e:  # the test asserts on it
            self.error = e
        finally:
            self.started.set()

    def result(self, timeout: float = 300) -> Call:
        self.join(timeout)
        assert not self.is_alive(), f"{self.path} still waiting after {timeout} s"
        assert self.error is None, repr(self.error)
        return self


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """SIGSTOP a process for the block; SIGCONT it afterwards whatever happens (a test never
    leaves a stopped process behind)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGCONT)
