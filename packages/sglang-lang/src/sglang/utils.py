"""`sglang.utils`: the helpers SGLang's user scripts and notebooks import.

Pure Python (httpx for HTTP, no torch): reading and writing data files, fetching a data set once,
waiting for a server, launching one from a shell command, and streaming text cleanly.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx

# ---- data files -----------------------------------------------------------------------------


def read_jsonl(filename: str | os.PathLike[str]) -> Iterator[Any]:
    """The JSON value of each line (blank lines and lines starting with '#' skipped)."""
    with open(filename, encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                yield json.loads(line)


def dump_state_text(filename: str | os.PathLike[str], states: Iterable[Any],
                    mode: str = "w") -> None:
    """Write each program state's text (or the str of anything else) in a numbered block."""
    with open(filename, mode, encoding="utf-8") as f:
        for i, state in enumerate(states):
            text = state if isinstance(state, str) else (
                state.text() if callable(getattr(state, "text", None)) else str(state))
            f.write(f"{'=' * 40} {i} {'=' * 40}\n{text}\n{'=' * 80}\n\n")


def _local_path(url: str) -> Path | None:
    """The file a local path or file:// URL names; None for a remote URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    return Path(url)  # a plain path (a Windows drive letter parses as a scheme: also a path)


def download_and_cache_file(url: str, filename: str | None = None) -> str:
    """The local path of `url`'s content, downloading it once.

    Local paths and file:// URLs are used where they are (no copy). An http(s) URL is saved to
    `filename` (default: its last path segment in the temp folder) unless that file exists.
    Without network access this raises ConnectionError saying where to put the file."""
    local = _local_path(url)
    if local is not None:
        if not local.is_file():
            raise FileNotFoundError(f"download_and_cache_file: no file at {local}")
        return str(local)
    target = Path(filename or os.path.join(tempfile.gettempdir(),
                                           urlparse(url).path.rsplit("/", 1)[-1] or "download"))
    if target.is_file():
        return str(target)
    partial = target.with_name(target.name + ".part")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60.0) as resp:
            resp.raise_for_status()
            with open(partial, "wb") as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)
    except httpx.HTTPStatusError as e:
        partial.unlink(missing_ok=True)
        raise OSError(f"downloading {url} failed: HTTP {e.response.status_code}") from e
    except httpx.HTTPError as e:
        partial.unlink(missing_ok=True)
        raise ConnectionError(
            f"could not download {url} ({e}); without network access, put the file at "
            f"{target} (it is used from there) or pass a local path or file:// URL") from e
    partial.replace(target)  # a complete file or none: an interrupted download is not cached
    return str(target)


def convert_json_schema_to_str(json_schema: Any) -> str:
    """A JSON schema given as a dict, a str, or a pydantic model class, as a JSON string."""
    if isinstance(json_schema, str):
        return json_schema
    if isinstance(json_schema, dict):
        return json.dumps(json_schema)
    if callable(getattr(json_schema, "model_json_schema", None)):
        return json.dumps(json_schema.model_json_schema())
    raise ValueError(f"cannot read a JSON schema from {json_schema!r}: give a dict, a str or "
                     "a pydantic model class")


def encode_image_base64(image: str | bytes | Any) -> str:
    """Base64 of an image file, of raw bytes, or of a PIL image (saved as PNG)."""
    if isinstance(image, str):
        data = Path(image).read_bytes()
    elif isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    elif callable(getattr(image, "save", None)):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
    else:
        raise TypeError(f"encode_image_base64 takes a path, bytes or a PIL image, not "
                        f"{type(image).__name__}")
    return base64.b64encode(data).decode("ascii")


# ---- small helpers ---------------------------------------------------------------------------


def get_exception_traceback() -> str:
    """The traceback of the exception being handled, as text."""
    return "".join(traceback.format_exception(*sys.exc_info()))


def is_same_type(values: list[Any]) -> bool:
    return all(isinstance(v, type(values[0])) for v in values[1:]) if values else True


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def find_printable_text(text: str) -> str:
    """The part of streamed `text` safe to print now: up to the last space, so a word that the
    next token may still extend is held back (a line end or a CJK character needs no wait)."""
    if text.endswith("\n") or (text and _is_cjk(text[-1])):
        return text
    if len(text) > 1 and _is_cjk(text[-2]):
        return text[:-1]
    return text[: text.rfind(" ") + 1]


def trim_overlap(existing_text: str, new_chunk: str) -> str:
    """`new_chunk` without its longest prefix that `existing_text` already ends with."""
    for k in range(min(len(existing_text), len(new_chunk)), 0, -1):
        if existing_text.endswith(new_chunk[:k]):
            return new_chunk[k:]
    return new_chunk


def stream_and_merge(llm: Any, prompt: Any, sampling_params: dict[str, Any]) -> str:
    """Stream `llm.generate(prompt, sampling_params, stream=True)` into one text."""
    text = ""
    for chunk in llm.generate(prompt, sampling_params, stream=True):
        text += trim_overlap(text, chunk["text"])
    return text


def print_highlight(content: Any) -> None:
    print(content)


def resolve_obj_by_qualname(qualname: str) -> Any:
    """`"package.module.name"` -> that object."""
    module, _, name = qualname.rpartition(".")
    return getattr(importlib.import_module(module), name)


class LazyImport:
    """`module_name.class_name`, imported on first use."""

    def __init__(self, module_name: str, class_name: str) -> None:
        self.module_name, self.class_name = module_name, class_name
        self._obj: Any = None

    def _load(self) -> Any:
        if self._obj is None:
            self._obj = getattr(importlib.import_module(self.module_name), self.class_name)
        return self._obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self._load(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._load()(*args, **kwargs)


# ---- servers ---------------------------------------------------------------------------------


def http_request(url: str, json: Any = None, stream: bool = False, api_key: str | None = None,
                 method: str | None = None, timeout: float | None = None) -> httpx.Response:
    """One request (POST with a JSON body, else GET unless `method` says); the response has
    `.json()`, `.text` and `.status_code`. With `stream` the body is read as it arrives
    (`iter_lines()`); close the response when done."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    verb = method or ("POST" if json is not None else "GET")
    client = httpx.Client(timeout=timeout, headers=headers)
    request = client.build_request(verb, url, json=json)
    resp = client.send(request, stream=stream)
    if not stream:
        client.close()
    return resp


def _check_alive(process: Any) -> None:
    code = process.poll() if process is not None and hasattr(process, "poll") else None
    if code is not None:
        raise RuntimeError(f"the server process exited with code {code}")


def wait_for_http_ready(url: str, timeout: float | None = None, process: Any = None,
                        headers: dict[str, str] | None = None) -> None:
    """Poll `url` until it answers 200; raise TimeoutError after `timeout` seconds (None: wait
    forever) or RuntimeError if `process` exits first."""
    start = time.monotonic()
    while True:
        _check_alive(process)
        try:
            if httpx.get(url, headers=headers, timeout=5.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"{url} was not ready within {timeout} s")
        time.sleep(0.5)


def wait_for_server(base_url: str, timeout: float | None = None, process: Any = None) -> None:
    """Wait until the server at `base_url` serves its OpenAI API (`/v1/models`)."""
    wait_for_http_ready(f"{base_url.rstrip('/')}/v1/models", timeout, process)


def execute_shell_command(command: str) -> subprocess.Popen[str]:
    """Start `command` (leading `KEY=value` words set environment variables; a trailing
    backslash-newline continues the line) without a shell."""
    words = shlex.split(command.replace("\\\n", " "))
    env = dict(os.environ)
    while words and "=" in words[0] and words[0].split("=", 1)[0].replace("_", "").isalnum():
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if not words:
        raise ValueError(f"no program to run in {command!r}")
    return subprocess.Popen(words, text=True, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def launch_server_cmd(command: str, host: str = "127.0.0.1",
                      port: int | None = None) -> tuple[subprocess.Popen[str], int]:
    """Start a server command with `--port` added (a free port unless given)."""
    if port is None:
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
    return execute_shell_command(f"{command} --port {port}"), port


def terminate_process(process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Stop a process started by `execute_shell_command` and the processes of its session."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
            process.wait()


__all__ = [
    "LazyImport", "convert_json_schema_to_str", "download_and_cache_file", "dump_state_text",
    "encode_image_base64", "execute_shell_command", "find_printable_text",
    "get_exception_traceback", "http_request", "is_same_type", "launch_server_cmd",
    "print_highlight", "read_jsonl", "resolve_obj_by_qualname", "stream_and_merge",
    "terminate_process", "trim_overlap", "wait_for_http_ready", "wait_for_server",
]  # fmt: skip
