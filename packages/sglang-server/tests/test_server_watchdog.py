"""The launcher's watchdog at tp=1: a child that dies (kill -9) or stops (kill -STOP, so its
heartbeat thread stops stamping) fails the requests in flight with a 503, turns /health to 503,
and ends the server with exit code 1, leaving no process and no IPC folder behind."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from lifecycle_helpers import ENDLESS, Call, ipc_folders, stopped, wait_running
from live_server import LiveServer, find_child, launch

SMALL = ("--max-total-tokens", "4096")
# A dead child ends the server this fast: the watchdog's poll, then at most FORCED_EXIT_AFTER_S.
DEAD_CHILD_EXIT_S = 10.0
CHILDREN = {"scheduler": "sglang:sched", "detokenizer": "sglang:detok"}


def health(server: LiveServer) -> int | None:
    """/health's status, or None once the listener is closed."""
    try:
        return httpx.get(f"{server.url}/health", timeout=10).status_code
    except httpx.TransportError:
        return None


def assert_failed_with_503(call: Call, words: str) -> None:
    call.result()
    assert call.response is not None and call.response.status_code == 503, call.response
    error = call.response.json()["error"]
    assert error["type"] == "server_error" and words in error["message"], error


@pytest.mark.parametrize("child", list(CHILDREN))
def test_killed_child_fails_requests_and_exits_1(child: str) -> None:
    server = launch(*SMALL)
    try:
        call = Call(server, "/generate", {"text": "Count to a thousand.",
                                          "sampling_params": ENDLESS})
        wait_running(server, 1)
        t0 = time.monotonic()
        os.kill(find_child(server.proc.pid, CHILDREN[child]), signal.SIGKILL)
        assert_failed_with_503(call, f"{child} process died")
        assert server.wait_exit(timeout=60) == 1, server.log_tail()
        assert time.monotonic() - t0 < DEAD_CHILD_EXIT_S, "the server took too long to notice"
        assert server.children_gone(), "a child outlived the server"
        assert f"{child} process died" in server.log_tail()
        assert ipc_folders(server) == [], "the IPC folder outlived the server"
    finally:
        server.stop()


@pytest.mark.parametrize("child", list(CHILDREN))
def test_stopped_child_is_noticed_at_tp1(child: str) -> None:
    """kill -STOP: the process lives but does nothing. Without the heartbeat the request would
    hang and /health would stay 200."""
    server = launch(*SMALL, "--rank-heartbeat-timeout", "3")
    try:
        call = Call(server, "/generate", {"text": "Count to a thousand.",
                                          "sampling_params": ENDLESS})
        wait_running(server, 1)
        pid = find_child(server.proc.pid, CHILDREN[child])
        with stopped(pid):
            assert_failed_with_503(call, f"{child} process stopped responding")
            # From the failure on, /health is a 503 until the listener closes.
            status = health(server)
            assert status in (503, None), status
            assert server.wait_exit(timeout=60) == 1, server.log_tail()
        assert server.children_gone(), "a child outlived the server"
        assert "stopped responding" in server.log_tail()
        assert ipc_folders(server) == [], "the IPC folder outlived the server"
    finally:
        server.stop()
