"""sglang.utils: the helpers user scripts import (offline: local files and a local server)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from fake_backend import FakeBackend

import sglang as sgl
from sglang import utils


def test_read_jsonl_and_dump_state_text(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"a": 1}\n# a comment\n\n{"a": [2, 3]}\n')
    assert list(utils.read_jsonl(data)) == [{"a": 1}, {"a": [2, 3]}]

    @sgl.function
    def prog(s):
        s += "Q:" + sgl.gen("a", max_tokens=3)

    state = prog.run(backend=FakeBackend(["yes"]))
    out = tmp_path / "states.txt"
    utils.dump_state_text(str(out), [state, "plain", 7])
    text = out.read_text()
    assert text.count("=" * 80) == 3 and "Q:yes" in text and " 2 " in text and "\n7\n" in text


def test_download_and_cache_file_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "hellaswag_val.jsonl"
    src.write_text('{"x": 1}\n')
    assert utils.download_and_cache_file(str(src)) == str(src)
    assert utils.download_and_cache_file(src.as_uri()) == str(src)
    with pytest.raises(FileNotFoundError):
        utils.download_and_cache_file(str(tmp_path / "missing.jsonl"))

    # A URL whose cached copy exists is not fetched again.
    cached = tmp_path / "cached.jsonl"
    cached.write_text("{}\n")
    assert utils.download_and_cache_file("https://example.invalid/x.jsonl", str(cached)) == (
        str(cached))

    def no_network(*args: object, **kwargs: object) -> None:
        raise httpx.ConnectError("network is unreachable")

    monkeypatch.setattr(httpx, "stream", no_network)
    target = tmp_path / "new.jsonl"
    with pytest.raises(ConnectionError, match=f"put the file at {target}"):
        utils.download_and_cache_file("https://example.invalid/new.jsonl", str(target))
    assert not target.exists() and not (tmp_path / "new.jsonl.part").exists()


def test_text_helpers() -> None:
    assert utils.find_printable_text("Hello wor") == "Hello "
    assert utils.find_printable_text("Hello\n") == "Hello\n"
    assert utils.find_printable_text("你好") == "你好"
    assert utils.trim_overlap("Hello wor", "world") == "ld"
    assert utils.trim_overlap("abc", "xyz") == "xyz"
    assert utils.is_same_type([1, 2]) and not utils.is_same_type([1, "2"])
    assert utils.convert_json_schema_to_str({"type": "int"}) == '{"type": "int"}'
    assert utils.encode_image_base64(b"\x00\x01") == "AAE="
    assert utils.resolve_obj_by_qualname("json.dumps") is json.dumps
    assert utils.LazyImport("json", "dumps")([1]) == "[1]"
    try:
        raise KeyError("boom")
    except KeyError:
        assert "KeyError: 'boom'" in utils.get_exception_traceback()


def test_launch_wait_and_terminate_a_server(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "models").write_text('{"data": []}')
    server = tmp_path / "serve.py"  # a static server taking --port, as launch_server does
    server.write_text(
        "import functools, http.server, sys\n"
        "port = int(sys.argv[sys.argv.index('--port') + 1])\n"
        "handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n"
        "http.server.ThreadingHTTPServer(('127.0.0.1', port), handler).serve_forever()\n")
    proc, port = utils.launch_server_cmd(
        f"PYTHONUNBUFFERED=1 {sys.executable} {server} {tmp_path}")
    try:
        utils.wait_for_server(f"http://127.0.0.1:{port}", timeout=30, process=proc)
        resp = utils.http_request(f"http://127.0.0.1:{port}/v1/models")
        assert resp.status_code == 200 and resp.json() == {"data": []}
    finally:
        utils.terminate_process(proc)
    assert proc.poll() is not None
    with pytest.raises(RuntimeError, match="exited"):
        utils.wait_for_server(f"http://127.0.0.1:{port}", timeout=5, process=proc)
