"""Decode replayed from captured CUDA graphs.

A decode step of a small model is dozens of tiny kernels per layer; launching them one by one
from Python costs more than running them. We capture the whole decode forward once per batch
size in `capture_sizes`, over static input buffers, and replay the smallest graph that fits the
batch, padding the extra rows so they write their K/V to the pool's scratch slot and read a
single (harmless) slot of request row 0.

Only backends whose decode path is free of host syncs and host-derived shapes can be captured
(`AttentionBackend.supports_cuda_graph`); the rest run eagerly.
"""

from __future__ import annotations

import bisect
import logging
import time

import torch
from torch import nn

from sglang.runtime.attention.base import AttentionBackend
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode, forward_context

logger = logging.getLogger("sglang.runtime")


def capture_sizes(max_bs: int) -> list[int]:
    """1, 2, 4, 8, every 8 up to 256, then every 16: padding wastes under 7% of a step."""
    sizes = [s for s in (1, 2, 4, 8) if s <= max_bs]
    sizes += list(range(16, min(max_bs, 256) + 1, 8)) + list(range(272, max_bs + 1, 16))
    if not sizes or sizes[-1] != max_bs:
        sizes.append(max_bs)
    return sorted(set(sizes))


class CudaGraphRunner:
    def __init__(
        self,
        model: nn.Module,
        kv_pool: KVPool,
        attn_backend: AttentionBackend,
        req_to_token: torch.Tensor,
        max_bs: int,
    ) -> None:
        self.model = model
        self.kv_pool = kv_pool
        self.attn_backend = attn_backend
        self.req_to_token = req_to_token
        self.sizes = capture_sizes(max_bs)
        self.max_bs = self.sizes[-1]
        device = req_to_token.device
        n = self.max_bs

        def buf(fill: int) -> torch.Tensor:
            return torch.full((n,), fill, dtype=torch.int64, device=device)

        self.input_ids = buf(0)
        self.positions = buf(0)
        self.out_cache_loc = buf(kv_pool.scratch_slot)
        self.req_pool_indices = buf(0)
        self.seq_lens = buf(1)
        self.prefix_lens = buf(0)
        self.extend_lens = buf(1)
        # Rows [0, _dirty) may hold an earlier batch's values; every row past it holds the
        # padding the buffers were made with (capture only reads them).
        self._dirty = 0
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.logits: torch.Tensor | None = None  # [max_bs, vocab], shared by every graph
        self._capture_all()

    def can_run(self, batch: ForwardBatch) -> bool:
        return (
            batch.mode == ForwardMode.DECODE
            and batch.batch_size <= self.max_bs
            and batch.logits_indices is None
        )

    def _static_batch(self, bs: int) -> ForwardBatch:
        return ForwardBatch(
            mode=ForwardMode.DECODE,
            input_ids=self.input_ids[:bs],
            positions=self.positions[:bs],
            out_cache_loc=self.out_cache_loc[:bs],
            req_pool_indices=self.req_pool_indices[:bs],
            seq_lens=self.seq_lens[:bs],
            prefix_lens=self.prefix_lens[:bs],
            extend_lens=self.extend_lens[:bs],
            req_to_token=self.req_to_token,
            kv_pool=self.kv_pool,
        )

    def _run_static(self, bs: int) -> None:
        batch = self._static_batch(bs)
        with forward_context(batch, self.attn_backend):
            logits = self.model(batch)
        if self.logits is None:
            self.logits = torch.empty(
                (self.max_bs, logits.shape[-1]), dtype=logits.dtype, device=logits.device
            )
        self.logits[:bs].copy_(logits)

    @torch.inference_mode()
    def _capture_all(self) -> None:
        start = time.perf_counter()
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        # Largest first: later, smaller graphs reuse the pool's blocks.
        for bs in reversed(self.sizes):
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up: autotuning, lazy inits, allocator growth
                    self._run_static(bs)
            stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                self._run_static(bs)
            self.graphs[bs] = graph
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        logger.info(
            "captured %d decode CUDA graphs (batch sizes up to %d) in %.1f s",
            len(self.graphs), self.max_bs, time.perf_counter() - start,
        )

    def replay(self, batch: ForwardBatch) -> torch.Tensor:
        bs = batch.batch_size
        gbs = self.sizes[bisect.bisect_left(self.sizes, bs)]
        self._pad(bs, gbs)
        self.input_ids[:bs].copy_(batch.input_ids, non_blocking=True)
        self.positions[:bs].copy_(batch.positions, non_blocking=True)
        self.out_cache_loc[:bs].copy_(batch.out_cache_loc, non_blocking=True)
        self.req_pool_indices[:bs].copy_(batch.req_pool_indices, non_blocking=True)
        self.seq_lens[:bs].copy_(batch.seq_lens, non_blocking=True)
        self.prefix_lens[:bs].copy_(batch.prefix_lens, non_blocking=True)
        self.graphs[gbs].replay()
        assert self.logits is not None
        return self.logits[:bs]

    def _pad(self, bs: int, gbs: int) -> None:
        """Padding in rows [bs, gbs): token 0 at position 0 of row 0, K/V written to the scratch
        slot. Only rows a larger batch has written since are reset (a launch per buffer, and
        a verify step's row count is seldom a captured size)."""
        stale = min(self._dirty, gbs)
        if stale > bs:
            self.input_ids[bs:stale].zero_()
            self.positions[bs:stale].zero_()
            self.out_cache_loc[bs:stale].fill_(self.kv_pool.scratch_slot)
            self.req_pool_indices[bs:stale].zero_()
            self.seq_lens[bs:stale].fill_(1)
            self.prefix_lens[bs:stale].zero_()
        # Rows past gbs keep whatever they held.
        self._dirty = bs if self._dirty <= gbs else self._dirty
