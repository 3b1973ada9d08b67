"""http(s) media references against a local HTTP server on 127.0.0.1: a good fetch, a 404, a body
over the size cap (declared and undeclared), a server too slow for the timeout, a refused port,
and a reserved .invalid host name (nothing leaves the machine)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from sglang.runtime.multimodal import fetch
from sglang.runtime.multimodal.fetch import fetch_url
from sglang.runtime.multimodal.media import load_media_bytes

PAYLOAD = bytes(range(256)) * 40  # 10 KiB


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == "/ok.png":
            self._send(PAYLOAD)
        elif self.path == "/slow.png":
            time.sleep(1.0)
            self._send(PAYLOAD)
        elif self.path == "/trickle.png":
            self.send_response(200)
            self.end_headers()
            for i in range(0, len(PAYLOAD), 1024):
                self.wfile.write(PAYLOAD[i:i + 1024])
                self.wfile.flush()
                time.sleep(0.05)
            self.close_connection = True
        elif self.path == "/undeclared.png":
            # No Content-Length: the size cap must hold while reading.
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PAYLOAD)
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that stops reading at the size cap breaks the pipe: expected here


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_is_fetched(base_url: str) -> None:
    assert load_media_bytes(f"{base_url}/ok.png") == PAYLOAD


def test_http_error_status_is_named(base_url: str) -> None:
    with pytest.raises(ValueError, match="HTTP 404"):
        load_media_bytes(f"{base_url}/missing.png")


@pytest.mark.parametrize("path", ["/ok.png", "/undeclared.png"])
def test_a_body_over_the_cap_is_refused(base_url: str, path: str) -> None:
    with pytest.raises(ValueError, match="too large"):
        fetch_url(base_url + path, max_bytes=len(PAYLOAD) - 1)
    assert fetch_url(base_url + path, max_bytes=len(PAYLOAD)) == PAYLOAD


def test_the_size_cap_applies_to_load_media_bytes(base_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "MAX_MEDIA_BYTES", 100)
    with pytest.raises(ValueError, match="too large"):
        load_media_bytes(f"{base_url}/ok.png")


def test_a_slow_server_times_out(base_url: str) -> None:
    start = time.monotonic()
    with pytest.raises(ValueError, match="did not answer in time"):
        fetch_url(f"{base_url}/slow.png", timeout=0.2)
    assert time.monotonic() - start < 5


def test_a_trickling_server_hits_the_deadline(base_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "FETCH_DEADLINE_S", 0.2)
    with pytest.raises(ValueError, match="took longer than 0.2 s"):
        fetch_url(f"{base_url}/trickle.png", timeout=5)


def test_a_refused_port_is_named() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the fetch: nothing listens there
    with pytest.raises(ValueError, match="refused"):
        fetch_url(f"http://127.0.0.1:{port}/x.png", timeout=2)


def test_an_unresolvable_host_says_so() -> None:
    # RFC 2606 reserves .invalid: it never resolves, so the test never reaches a network.
    with pytest.raises(ValueError, match="does not resolve.*offline"):
        load_media_bytes("https://images.invalid/cat.png")


def test_a_url_without_host_is_refused() -> None:
    with pytest.raises(ValueError, match="has no host"):
        load_media_bytes("http:///cat.png")
