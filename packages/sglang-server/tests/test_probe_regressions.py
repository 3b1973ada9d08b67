"""What held when the server was probed as an attacker and a load test would (issue 15), kept as
regression tests: the API key guards every route but /health whatever the path spelling, and a
long run of requests leaves no KV slot held and no growth in the HTTP process. Loopback only,
bounded in count and time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import psutil
import pytest
from live_server import LiveServer, launch, metric, require_model, wait_idle

KEY = "probe-key"
SMALL = ("--max-total-tokens", "4096")
# Spellings of guarded routes that a path-normalising proxy or a lax router might let through.
PATH_TRICKS = [
    "/generate/", "//generate", "/GENERATE", "/generate?x=1", "/%67enerate", "/./generate",
    "/health/../generate", "/health/%2e%2e/generate", "/v1/../generate", "/v1/models/",
    "//v1/models", "/v1//models", "/health%2f..%2fgenerate", "/get_server_args%00",
    "/metrics/", "/health/../metrics",
]
GUARDED = ["/generate", "/v1/models", "/v1/completions", "/v1/chat/completions",
           "/get_model_info", "/get_server_args", "/flush_cache", "/metrics",
           "/debug/check_integrity"]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    require_model()
    srv = launch(*SMALL, api_key=KEY)
    try:
        yield srv
    finally:
        srv.stop()


def test_every_route_but_health_needs_the_key(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/health").status_code == 200
        for path in GUARDED:
            for method in ("GET", "POST"):
                r = c.request(method, path, json={})
                assert r.status_code == 401, (method, path, r.status_code)


def test_no_path_spelling_bypasses_the_key(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for path in PATH_TRICKS:
            for method in ("GET", "POST"):
                r = c.request(method, path, json={"text": "hi"})
                # Refused (401) or not a route (404/405/400); never served without the key.
                assert r.status_code in (400, 401, 404, 405), (method, path, r.status_code)


def test_a_thousand_requests_leave_no_slot_and_no_growth(server: LiveServer) -> None:
    http_proc = psutil.Process(server.proc.pid)
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"text": "Count: 1 2 3", "sampling_params": {"max_new_tokens": 1, "temperature": 0}}

    async def burst(n: int) -> list[int]:
        limit = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as c:

            async def one() -> int:
                async with limit:
                    return (await c.post("/generate", json=body)).status_code

            return await asyncio.gather(*(one() for _ in range(n)))

    assert asyncio.run(burst(40)) == [200] * 40  # warm-up: caches, lazily built objects
    rss_before = http_proc.memory_info().rss
    with server.client() as c:
        before = metric(c.get("/metrics").text, "sglang_requests_total")
    assert asyncio.run(burst(1000)) == [200] * 1000
    growth = http_proc.memory_info().rss - rss_before
    assert growth < 64 << 20, f"the HTTP process grew by {growth / 2**20:.1f} MiB"
    with server.client() as c:
        after = metric(c.get("/metrics").text, "sglang_requests_total")
    assert after - before == 1000
    integrity = wait_idle(server)
    assert integrity["kv_used_tokens"] == 0
