"""Server lifecycle on short-lived servers: --api-key, SIGTERM draining, bad arguments (dead and
stuck children: test_server_watchdog.py; the drain deadline: test_server_drain.py). Each server
is its own process tree; none may outlive its test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
from lifecycle_helpers import STOP_WARNING, ipc_folders, wait_running
from live_server import SRC_DIRS, launch, require_model

SMALL = ("--max-total-tokens", "4096")
# Long enough that a slow or loaded machine still finishes a short request while draining.
GENEROUS_DRAIN = ("--graceful-shutdown-timeout", "300")


def test_api_key_then_sigterm_drains_and_exits_0() -> None:
    server = launch(*SMALL, *GENEROUS_DRAIN, api_key="sekrit")
    try:
        assert len(ipc_folders(server)) == 1
        url = server.url
        assert httpx.get(f"{url}/health").status_code == 200  # open without a key
        r = httpx.post(f"{url}/generate", json={"text": "Hi"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = httpx.get(f"{url}/get_model_info", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 401
        with server.client() as c:
            assert c.get("/get_model_info").status_code == 200
            assert c.post("/generate", json={"text": "Hi", "sampling_params": {
                "max_new_tokens": 2}}).status_code == 200
            # The key never leaks through /get_server_args.
            assert "sekrit" not in c.get("/get_server_args").text

        # SIGTERM while a request runs: it completes, then the server exits 0.
        result: dict[str, httpx.Response] = {}

        def run() -> None:
            with server.client() as c:
                result["r"] = c.post("/generate", json={
                    "text": "Tell me a story.",
                    "sampling_params": {"max_new_tokens": 48, "temperature": 0,
                                        "ignore_eos": True}})

        t = threading.Thread(target=run)
        t.start()
        wait_running(server, 1)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # Draining: a new request is refused (503, or the listener is already closed).
        try:
            refused = httpx.get(f"{url}/get_model_info", headers=server.headers).status_code
        except httpx.TransportError:
            refused = 503
        assert refused == 503
        t.join(timeout=300)
        r = result["r"]
        assert r.status_code == 200, r.text
        assert r.json()["meta_info"]["completion_tokens"] == 48
        assert server.wait_exit(timeout=60) == 0, server.log_tail()
        assert server.children_gone(), "children outlived the server"
        # The idle children stopped on their SIGTERM: none had to be killed.
        assert STOP_WARNING not in server.log_tail(200), server.log_tail()
        assert ipc_folders(server) == [], "the IPC folder outlived the server"
    finally:
        server.stop()


def test_bad_arguments_exit_nonzero_with_a_message() -> None:
    require_model()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in SRC_DIRS)}
    r = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--tp", "3", "--nnodes",
                        "2", "--dist-init-addr", "127.0.0.1:1"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "multiple of nnodes" in r.stderr
    r = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--model-path",
                        "/nonexistent/model.gguf", "--port", "1"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "/nonexistent/model.gguf" in r.stderr
    with socket.socket() as taken:  # a busy port is refused before any model loads
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        r = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--port", port],
                           capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "cannot listen" in r.stderr
