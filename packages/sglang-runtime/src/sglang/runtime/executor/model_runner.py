"""Runs one forward pass of a model over a prepared batch."""

from __future__ import annotations

import logging

import torch
from torch import nn

from sglang.runtime.attention.base import AttentionBackend
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.executor.cuda_graph import CudaGraphRunner
from sglang.runtime.executor.encoder_cache import EncoderCache
from sglang.runtime.executor.forward_context import ForwardBatch, forward_context
from sglang.runtime.layers.gemm import prepare_weights

logger = logging.getLogger("sglang.runtime")

# On the CPU a step of a few tokens is hundreds of small ops, and with several intra-op threads
# each pays an OpenMP fork/join worth more than its work: SmolLM2 batch-1 decode on 2 cores ran
# 22 tok/s on 2 threads and 33 on one (the packed GEMV included), while 64-token steps need
# both cores for their GEMMs. Steps of at most this many tokens run on one thread.
CPU_SMALL_STEP_TOKENS = 8


class ModelRunner:
    """Owns the model, its KV pool and the attention backend; `forward` returns float32 logits
    [num_selected, vocab] for the batch (one row per request unless `logits_indices` is set)."""

    def __init__(
        self,
        model: nn.Module,
        kv_pool: KVPool,
        attn_backend: AttentionBackend,
        gemv_max_batch: int = 1,
    ) -> None:
        self.model = model
        self.kv_pool = kv_pool
        self.attn_backend = attn_backend
        self.cuda_graphs: CudaGraphRunner | None = None
        # Only multimodal batches touch it (DECODE, the only captured mode, never does).
        self.encoder_cache = EncoderCache()
        self._cpu_threads: int | None = None  # the configured count, read at the first step
        prepare_weights(model, gemv_max_batch)

    def enable_cuda_graphs(self, req_to_token: torch.Tensor, max_bs: int) -> bool:
        """Capture decode graphs; False (eager decode) where the device or backend can't."""
        if req_to_token.device.type != "cuda" or max_bs < 1:
            return False
        if not self.attn_backend.supports_cuda_graph:
            logger.info("%s cannot be captured: decode runs eagerly",
                        type(self.attn_backend).__name__)
            return False
        self.cuda_graphs = CudaGraphRunner(
            self.model, self.kv_pool, self.attn_backend, req_to_token, max_bs
        )
        return True

    def graph_fits(self, rows: int) -> bool:
        """Whether a DECODE batch of `rows` rows would replay a captured graph."""
        return self.cuda_graphs is not None and rows <= self.cuda_graphs.max_bs

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        if batch.kv_pool is not self.kv_pool:
            raise ValueError("batch.kv_pool is not the runner's KV pool")
        if self.cuda_graphs is not None and self.cuda_graphs.can_run(batch):
            return self.cuda_graphs.replay(batch)
        if batch.input_ids.device.type == "cpu":
            self._set_cpu_threads(batch.input_ids.numel())
        with torch.inference_mode(), forward_context(
            batch, self.attn_backend, self.encoder_cache
        ):
            return self.model(batch)

    def _set_cpu_threads(self, tokens: int) -> None:
        if self._cpu_threads is None:
            self._cpu_threads = torch.get_num_threads()
        want = 1 if tokens <= CPU_SMALL_STEP_TOKENS else self._cpu_threads
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    def restore_cpu_threads(self) -> None:
        """Back to the configured intra-op thread count (the engine's shutdown). The count is
        process-wide: left at 1 by a last small step, it was what the next engine in this
        process read as configured, and that engine ran on one thread (offline_throughput.py's
        second weight form, after the first one's batch-1 decode: distinct 320 -> 193 tok/s on
        2 cores). Set even where this thread already reads it: torch keeps the count a new
        thread starts with apart from each thread's own (the engine calls this from its
        thread, not the scheduler's)."""
        if self._cpu_threads is not None:
            torch.set_num_threads(self._cpu_threads)
