"""`sgl.Runtime`: start a local sglang server as a child process and talk to it over HTTP.

The server runs in its own process (`python -m sglang.launch_server`), so this module needs no
torch; it only needs the server's package (sglang-server) to be installed.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint

STARTUP_TIMEOUT_S = 600.0  # loading a model on a small CPU takes a while
SHUTDOWN_TIMEOUT_S = 60.0  # the server drains running requests on SIGTERM (up to 30 s)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def server_args_to_cli(server_args: dict[str, Any]) -> list[str]:
    """`mem_fraction_static=0.5` -> `--mem-fraction-static 0.5`; True -> a bare flag; False and
    None -> nothing (the server's default); a list -> the flag followed by each value."""
    argv: list[str] = []
    for key, value in server_args.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv


def _require_server_package() -> None:
    try:
        found = importlib.util.find_spec("sglang.launch_server") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ImportError(
            "sgl.Runtime starts a local server, which needs the sglang server package: "
            "pip install sglang-server"
        )


def _child_env() -> dict[str, str]:
    """The parent's environment, plus the folders our `sglang` namespace was imported from, so
    the child finds the same packages even when sys.path was changed in this process."""
    import sglang

    env = dict(os.environ)
    roots = [str(Path(p).parent) for p in getattr(sglang, "__path__", [])]
    old = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*roots, *old]))
    return env


class Runtime:
    """A server for this Python process. `Runtime(model_path=None, **server_args)`: keyword
    arguments are `launch_server` options (`mem_fraction_static=0.5`, `disable_radix_cache=True`,
    `tp_size=2` for one scheduler process per tensor-parallel rank).
    `model_path=None` serves the embedded default model. Use as a context manager, or call
    `shutdown()`; it is also stopped when the interpreter exits."""

    def __init__(
        self,
        model_path: str | None = None,
        *,
        log_level: str = "error",
        startup_timeout: float = STARTUP_TIMEOUT_S,
        log_file: str | None = None,
        **server_args: Any,
    ) -> None:
        _require_server_package()
        self.host = str(server_args.pop("host", "127.0.0.1"))
        self.port = int(server_args.pop("port", None) or _free_port(self.host))
        self.url = f"http://{self.host}:{self.port}"
        self.api_key: str | None = server_args.get("api_key")
        args = {"model_path": model_path, **server_args, "log_level": log_level}
        argv = [sys.executable, "-m", "sglang.launch_server",
                "--host", self.host, "--port", str(self.port), *server_args_to_cli(args)]
        # Child output goes to a file: a pipe nobody reads would fill up and block the server.
        self._own_log = log_file is None  # a temporary log is removed after a clean stop
        if log_file is None:
            fd, log_file = tempfile.mkstemp(prefix="sglang-runtime-", suffix=".log")
            os.close(fd)
        self.log_file = log_file
        with open(log_file, "ab") as log:
            # Its own session: Ctrl-C in a terminal reaches only us, and we stop it in order.
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=_child_env(),
                                         start_new_session=True)
        self.pid = self.proc.pid
        self._stopped = False
        atexit.register(self.shutdown)
        try:
            self._wait_healthy(startup_timeout)
        except BaseException:
            self.shutdown()
            raise
        self.endpoint = RuntimeEndpoint(self.url, api_key=self.api_key)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"the sglang server exited with code {code} during start-up; its output "
                    f"({self.log_file}) ends with:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=5.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"the sglang server was not healthy after {timeout:.0f} s; its output "
            f"({self.log_file}) ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = Path(self.log_file).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
        """SIGTERM (the server stops its own children), then SIGKILL to the whole process group
        if it has not exited within `timeout`. Safe to call more than once."""
        atexit.unregister(self.shutdown)
        if self._stopped:
            return
        self._stopped = True
        endpoint = getattr(self, "endpoint", None)
        if endpoint is not None:
            endpoint.shutdown()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Also ends helpers left in its process group (multiprocessing's resource tracker). The
        # scheduler and detokenizer have their own groups: the launcher stops them, and they die
        # with it if it is killed. Done once, right after the leader exited, so the group id
        # cannot have been reused.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        if self._own_log and self.proc.returncode == 0 and getattr(self, "endpoint", None):
            Path(self.log_file).unlink(missing_ok=True)

    # ---- conveniences, as in SGLang's Runtime ----------------------------------------------------
    def generate(self, prompt: str | list[str], sampling_params: dict[str, Any] | None = None,
                 **kwargs: Any) -> str:
        """POST /generate; returns the response body as a JSON string (SGLang's convention)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"text": prompt, "sampling_params": sampling_params or {}, **kwargs}
        resp = httpx.post(f"{self.url}/generate", json=body, headers=headers, timeout=None)
        return resp.text

    def cache_prefix(self, prefix: str) -> None:
        self.endpoint.cache_prefix(prefix)

    @property
    def token_usage(self) -> Any:
        """The endpoint's TokenUsage (`sgl.global_config.default_backend.token_usage`)."""
        return self.endpoint.token_usage

    def get_model_name(self) -> str:
        return self.endpoint.get_model_name()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"Runtime(url={self.url!r}, pid={self.pid})"


__all__ = ["Runtime", "server_args_to_cli"]
