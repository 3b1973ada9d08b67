"""SIGTERM's drain deadline: requests still running when --graceful-shutdown-timeout expires
get an OpenAI-style 503 (non-streaming) or a final SSE error event (streaming), on /generate and
the OpenAI routes, and the server still exits 0. The requests cannot finish by construction:
the scheduler is stopped (SIGSTOP) for the drain, with a heartbeat timeout far beyond it.
Also the start-up sweep of IPC folders left by killed launchers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from lifecycle_helpers import ENDLESS, Call, ipc_folders, stopped, wait_running
from live_server import find_child, launch

from sglang.server.ipc import sweep_stale_ipc_folders

DRAIN = ("--max-total-tokens", "8192", "--graceful-shutdown-timeout", "1",
         "--rank-heartbeat-timeout", "3600")
PROMPT = "Count to a thousand."


def assert_503(call: Call) -> None:
    call.result()
    assert call.response is not None, call.events
    assert call.response.status_code == 503, call.response.text
    error = call.response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == 503, error
    assert "shutting down" in error["message"], error


def assert_sse_error(call: Call) -> None:
    call.result()
    assert call.status == 200 and call.events, (call.status, call.events)
    assert call.events[-1] == "[DONE]", call.events[-3:]
    last = call.events[-2]
    assert isinstance(last, dict) and "error" in last, call.events[-3:]
    assert last["error"]["code"] == 503 and "shutting down" in last["error"]["message"], last


def test_drain_timeout_answers_503_and_sse_error_events() -> None:
    server = launch(*DRAIN)
    try:
        model = "default"
        streams = [
            Call(server, "/generate", {"text": PROMPT, "stream": True,
                                       "sampling_params": ENDLESS}),
            Call(server, "/v1/chat/completions", {
                "model": model, "stream": True, "max_tokens": ENDLESS["max_new_tokens"],
                "temperature": 0, "ignore_eos": True,
                "messages": [{"role": "user", "content": PROMPT}]}),
        ]
        for s in streams:  # the 200 header is out: an error can only come as an event now
            assert s.started.wait(300) and s.events, (s.status, s.error)
        plain = [
            Call(server, "/generate", {"text": PROMPT, "sampling_params": ENDLESS}),
            Call(server, "/v1/completions", {
                "model": model, "prompt": PROMPT, "max_tokens": ENDLESS["max_new_tokens"],
                "temperature": 0, "ignore_eos": True}),
        ]
        wait_running(server, 4)
        with stopped(find_child(server.proc.pid, "sglang:sched")):
            server.proc.send_signal(signal.SIGTERM)
            for c in plain:
                assert_503(c)
            for s in streams:
                assert_sse_error(s)
        assert server.wait_exit(timeout=120) == 0, server.log_tail()
        assert "drain timeout (1 s) expired: 4 request(s)" in server.log_tail(200)
        assert server.children_gone(), "children outlived the server"
        assert ipc_folders(server) == [], "the IPC folder outlived the server"
    finally:
        server.stop()


def test_sweep_removes_only_folders_of_dead_launchers(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    dead = tmp_path / f"sglang-ipc-{gone.pid}-abc"
    live = tmp_path / f"sglang-ipc-{os.getpid()}-def"
    legacy = tmp_path / "sglang-ipc-xyz"  # no pid in the name: not ours to judge
    other = tmp_path / f"unrelated-{gone.pid}-abc"
    for d in (dead, live, legacy, other):
        d.mkdir()
        (d / "scheduler").write_text("")
    assert sweep_stale_ipc_folders(str(tmp_path)) == [str(dead)]
    assert not dead.exists() and live.exists() and legacy.exists() and other.exists()
