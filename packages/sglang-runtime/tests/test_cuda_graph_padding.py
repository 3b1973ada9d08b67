"""CUDA-graph replay's padding rows (executor/cuda_graph.py), checked on the CPU: capture is
replaced by graphs that record the static buffers they would read, so the bookkeeping that
resets only the rows an earlier, larger batch wrote is tested without a GPU."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.executor.cuda_graph import CudaGraphRunner
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode

BUFFERS = ("input_ids", "positions", "out_cache_loc", "req_pool_indices", "seq_lens",
           "prefix_lens")


class _RecordingGraph:
    def __init__(self, runner: CudaGraphRunner, bs: int, seen: list[tuple[int, dict]]) -> None:
        self.runner, self.bs, self.seen = runner, bs, seen

    def replay(self) -> None:
        self.seen.append((self.bs, {n: getattr(self.runner, n)[: self.bs].clone()
                                    for n in BUFFERS}))


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> tuple[CudaGraphRunner, list[Any]]:
    seen: list[tuple[int, dict]] = []

    def capture(self: CudaGraphRunner) -> None:
        self.graphs = {bs: _RecordingGraph(self, bs, seen) for bs in self.sizes}  # type: ignore[misc]
        self.logits = torch.zeros(self.max_bs, 4)

    monkeypatch.setattr(CudaGraphRunner, "_capture_all", capture)
    pool = KVPool(64, 1, 1, 4, torch.float32, "cpu")
    table = torch.zeros(8, 32, dtype=torch.int64)
    return CudaGraphRunner(torch.nn.Identity(), pool, None, table, 24), seen  # type: ignore[arg-type]


def _batch(runner: CudaGraphRunner, bs: int, rng: random.Random) -> ForwardBatch:
    def col(lo: int, hi: int) -> torch.Tensor:
        return torch.tensor([rng.randint(lo, hi) for _ in range(bs)], dtype=torch.int64)

    positions = col(1, 30)
    return ForwardBatch(
        mode=ForwardMode.DECODE, input_ids=col(1, 99), positions=positions,
        out_cache_loc=col(0, 63), req_pool_indices=col(1, 7), seq_lens=positions + 1,
        prefix_lens=positions, extend_lens=torch.ones(bs, dtype=torch.int64),
        req_to_token=runner.req_to_token, kv_pool=runner.kv_pool,
    )


def test_replay_reads_the_batch_then_padding(runner: tuple[CudaGraphRunner, list[Any]]) -> None:
    graphs, seen = runner
    assert graphs.sizes == [1, 2, 4, 8, 16, 24]
    rng = random.Random(0)
    padding = {"input_ids": 0, "positions": 0, "out_cache_loc": graphs.kv_pool.scratch_slot,
               "req_pool_indices": 0, "seq_lens": 1, "prefix_lens": 0}
    # Sizes up and down, within one graph and across graphs, captured sizes and not.
    sizes = [5, 3, 8, 1, 20, 9, 2, 17, 24, 6, 5, 13, 1, 3] + [rng.randint(1, 24) for _ in range(60)]
    for bs in sizes:
        batch = _batch(graphs, bs, rng)
        graphs.replay(batch)
        gbs, read = seen[-1]
        assert gbs == min(s for s in graphs.sizes if s >= bs)
        for name in BUFFERS:
            assert torch.equal(read[name][:bs], getattr(batch, name)), (bs, name)
            assert (read[name][bs:] == padding[name]).all(), (bs, name)
