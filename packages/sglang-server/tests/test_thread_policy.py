"""Per-process compute threads of a live server: the scheduler gets the cores it may run on, the
HTTP and detokenizer processes one thread each (issue 15: oversubscribed OpenMP pools made the
server decode ~6x slower than the Engine on CPU)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from live_server import find_child, launch, report_thread_env

from sglang.runtime.procs import AUX_THREADS, scheduler_threads
from sglang.runtime.procs.child import available_cores, thread_env

SMALL = ("--max-total-tokens", "4096", "--log-level", "info")


def _environ(pid: int) -> dict[str, str]:
    """The environment a process was started with (what its libraries read at start)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _reported_threads(log: str) -> dict[str, int]:
    line = re.search(r"compute threads: (.*)", log)
    assert line, f"no thread report in the log:\n{log[-3000:]}"
    return {name: int(n) for name, n in re.findall(r"([a-z ]+?) (\d+)(?:, |$)", line.group(1))}


def test_scheduler_gets_the_cores_and_the_rest_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(var, raising=False)
    cores = available_cores()
    server = launch(*SMALL)
    try:
        reported = _reported_threads(Path(server.log_path).read_text(errors="replace"))
        # Each process reports its own torch / OpenMP pool size from inside itself.
        assert reported == {"scheduler": cores, "detokenizer": AUX_THREADS, "http": AUX_THREADS}
        sched = _environ(find_child(server.proc.pid, "sglang:sched"))
        detok = _environ(find_child(server.proc.pid, "sglang:detok"))
        assert sched["OMP_NUM_THREADS"] == sched["MKL_NUM_THREADS"] == str(cores)
        assert detok["OMP_NUM_THREADS"] == detok["MKL_NUM_THREADS"] == str(AUX_THREADS)
        assert sched["TOKENIZERS_PARALLELISM"] == detok["TOKENIZERS_PARALLELISM"] == "false"
        assert sched["OMP_WAIT_POLICY"] == "PASSIVE"
    finally:
        server.stop()


def test_policy_respects_the_user_and_shares_cores_between_ranks() -> None:
    cores = available_cores()
    assert scheduler_threads(1, {}) == cores
    assert scheduler_threads(2, {}) == max(1, cores // 2)
    assert scheduler_threads(cores * 4, {}) == 1
    assert scheduler_threads(1, {"OMP_NUM_THREADS": "3"}) == 3
    # A value OpenMP would not accept is not the user's choice: fall back to the cores.
    assert scheduler_threads(1, {"OMP_NUM_THREADS": "zero"}) == cores
    assert thread_env(5, {})["OMP_NUM_THREADS"] == "5"
    assert thread_env(5, {})["OMP_WAIT_POLICY"] == "PASSIVE"
    assert thread_env(5, {"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"


def test_spawned_child_starts_with_its_threads_and_parent_env_is_restored() -> None:
    import multiprocessing

    from sglang.runtime.procs import start_child, wait_ready

    before = os.environ.get("OMP_NUM_THREADS")
    ctx = multiprocessing.get_context("spawn")
    child = start_child(ctx, "probe", report_thread_env, (), threads=3)
    try:
        wait_ready([child])
    finally:
        child.proc.join(30)
    assert child.info == {"ok": True, "omp": "3", "tok": "false"}
    assert os.environ.get("OMP_NUM_THREADS") == before
