"""The offline Engine frees its building thread's OpenMP workers before the scheduler thread
starts (executor/openmp.py says why): in a fresh process, so the count of threads is this test's
own."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_release_frees_the_calling_threads_workers():
    out = run("""
        import os, torch
        from sglang.runtime.executor.openmp import release_thread_pool
        torch.set_num_threads(2)
        torch.randn(600, 600) @ torch.randn(600, 600)  # a parallel region: the workers start
        before = len(os.listdir("/proc/self/task"))
        released = release_thread_pool()
        print(before, len(os.listdir("/proc/self/task")), released)
    """)
    before, after, released = (int(x) for x in out.split())
    assert released >= 1
    assert after == before - 1  # the one worker of a 2-thread team


def test_scheduler_thread_start_releases(monkeypatch):
    from sglang.runtime.procs import thread_loop

    calls = []
    monkeypatch.setattr(thread_loop, "release_thread_pool", lambda: calls.append(1) or 1)

    class Idle:
        has_work = False

    loop = thread_loop.SchedulerThread(Idle())  # type: ignore[arg-type]
    loop.shutdown()
    assert calls == [1]
