"""The server with --tp 2 (one scheduler process per rank, gloo on CPU): the official `openai`
client, 32 concurrent requests, integrity on every rank; two "nodes" on loopback (--nnodes 2,
one rank each) answer as --tp 2 does and the second node leaves with the first; a killed rank
ends the server with a non-zero exit within seconds, naming the rank."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from live_server import SRC_DIRS, LiveServer, find_child, free_port, launch, pid_alive

ARGS = ("--max-total-tokens", "8192", "--context-length", "1024")
PROMPTS = ["The capital of France is", "def fibonacci(n):", "List three primary colors:\n1.",
           "Q: Why is the sky blue?\nA:"]


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_rank() -> Iterator[None]:
    # Nodes on one 2-core machine: each rank would otherwise take every core.
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    if old is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = old


@pytest.fixture(scope="module")
def tp2() -> Iterator[LiveServer]:
    server = launch("--tp", "2", *ARGS)
    try:
        yield server
    finally:
        server.stop()


def test_cli_and_sgl_runtime_pass_the_parallel_options_through() -> None:
    from sglang.lang.runtime import server_args_to_cli
    from sglang.server.args import parse_args

    argv = server_args_to_cli({"tp_size": 4, "nnodes": 2, "node_rank": 1,
                               "dist_init_addr": "10.0.0.1:5000"})
    rt = parse_args(argv).runtime
    assert (rt.tp_size, rt.nnodes, rt.node_rank, rt.dist_init_addr) == (4, 2, 1, "10.0.0.1:5000")
    assert rt.node_tp_ranks == [2, 3]
    with pytest.raises(SystemExit):  # several nodes need a meeting point
        parse_args(["--tp", "2", "--nnodes", "2"])


def answers(server: LiveServer) -> list[list[int]]:
    with server.client() as c:
        r = c.post("/generate", json={
            "text": PROMPTS, "sampling_params": {"max_new_tokens": 8, "temperature": 0}})
    assert r.status_code == 200, r.text
    return [o["output_ids"] for o in r.json()]


def test_openai_client_and_32_concurrent_requests(tp2: LiveServer) -> None:
    with openai.OpenAI(base_url=f"{tp2.url}/v1", api_key="x", max_retries=0, timeout=180) as c:
        model = c.models.list().data[0].id
        chat = c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=8, temperature=0)
        assert chat.choices[0].message.content and chat.usage.completion_tokens > 0

        def one(i: int) -> openai.types.Completion:
            return c.completions.create(model=model, prompt=f"Count from {i} to {i + 5}:",
                                        max_tokens=4, temperature=0)

        with ThreadPoolExecutor(32) as pool:
            done = list(pool.map(one, range(32)))
    assert len(done) == 32
    assert all(r.choices[0].finish_reason in ("length", "stop") for r in done)
    assert all(r.usage.completion_tokens >= 1 for r in done)
    with tp2.client() as c:
        check = c.get("/debug/check_integrity").json()
    assert check["ok"] and check["tp_ranks_checked"] == 2, check


def _node1(port: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in SRC_DIRS)}
    fd, log = tempfile.mkstemp(prefix="sglang-node1-", suffix=".log")
    with os.fdopen(fd, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sglang.launch_server", "--tp", "2", "--nnodes", "2",
             "--node-rank", "1", "--dist-init-addr", f"127.0.0.1:{port}",
             "--log-level", "warning", *ARGS],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def test_two_nodes_on_loopback_answer_like_tp2(tp2: LiveServer) -> None:
    expected = answers(tp2)
    port = free_port()
    node1, log1 = _node1(port)
    node0 = None
    try:
        node0 = launch("--tp", "2", "--nnodes", "2", "--node-rank", "0",
                       "--dist-init-addr", f"127.0.0.1:{port}", *ARGS)
        assert answers(node0) == expected
        with node0.client() as c:
            assert c.get("/debug/check_integrity").json()["tp_ranks_checked"] == 2
        rank1 = find_child(node1.pid, "sglang:tp1")
        # Node 0 stops cleanly; node 1's rank hears it and its launcher exits too.
        node0.proc.send_signal(signal.SIGTERM)
        assert node0.wait_exit(timeout=45) == 0, node0.log_tail()
        assert node1.wait(timeout=20) == 0, open(log1).read()[-3000:]
        assert not pid_alive(rank1)
    finally:
        if node0 is not None:
            node0.stop()
        if node1.poll() is None:
            node1.kill()
            node1.wait(10)


def test_killed_rank_ends_the_server_nonzero(tp2: LiveServer) -> None:
    """Last in the module: it ends the shared server."""
    rank1 = find_child(tp2.proc.pid, "sglang:tp1")
    t0 = time.monotonic()
    os.kill(rank1, signal.SIGKILL)
    code = tp2.wait_exit(timeout=20)
    assert code != 0
    assert time.monotonic() - t0 < 10, "the server took too long to notice"
    assert "tp rank 1 scheduler process died" in tp2.log_tail()
    assert tp2.children_gone(), "rank or detokenizer processes outlived the server"


def test_gemv_max_batch_is_parsed_and_checked() -> None:
    from sglang.server.args import parse_args

    assert parse_args(["--gemv-max-batch", "0"]).runtime.gemv_max_batch == 0
    assert parse_args([]).runtime.gemv_max_batch == 1
    with pytest.raises(SystemExit):  # RuntimeArgs rejects it, the parser reports it
        parse_args(["--gemv-max-batch", "9"])
