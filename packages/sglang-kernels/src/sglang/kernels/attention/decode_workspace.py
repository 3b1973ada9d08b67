"""Scratch of the split-KV decode attention (`decode.py`): partial outputs, their
log-sum-exps and the per-(request, KV head) arrival counters, preallocated so that a call can
be captured in a CUDA graph."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Splits a workspace is sized for when the caller does not say (and decode_attention's
# default).
DEFAULT_NUM_KV_SPLITS = 8


@dataclass
class DecodeWorkspace:
    """Scratch of the split-KV decode, reusable across calls, layers and batch sizes.

    Two flat buffers, viewed per call as ``mid_o [batch, num_heads, num_kv_splits, head_dim]``
    (each split's normalised partial output: fp32, or the activations' dtype when the reduction
    may run in it) and ``mid_lse [batch, num_heads, num_kv_splits]`` fp32 (each split's
    log-sum-exp, ``-inf`` for an empty split), plus the arrival counters ``[max_batch,
    num_heads]`` int32 (zero between calls). Any call whose ``batch * num_kv_splits`` fits the
    capacity and whose batch fits the counters can use it, so one workspace serves every
    captured batch size. Calls sharing a workspace must run one after another (one stream).
    """

    o: torch.Tensor  # flat, capacity * num_heads * head_dim elements
    lse: torch.Tensor  # flat fp32, capacity * num_heads elements
    num_heads: int
    head_dim: int
    arrivals: torch.Tensor  # [max_batch, num_heads] int32, zeros

    @classmethod
    def allocate(
        cls,
        max_batch: int,
        num_heads: int,
        head_dim: int,
        num_kv_splits: int = DEFAULT_NUM_KV_SPLITS,
        device: torch.device | str = "cuda",
        dtype: torch.dtype = torch.float32,
    ) -> DecodeWorkspace:
        rows = max_batch * num_kv_splits * num_heads
        return cls(
            torch.empty(rows * head_dim, dtype=dtype, device=device),
            torch.empty(rows, dtype=torch.float32, device=device),
            num_heads,
            head_dim,
            torch.zeros((max_batch, num_heads), dtype=torch.int32, device=device),
        )

    @property
    def capacity(self) -> int:
        """The largest ``batch * num_kv_splits`` this workspace holds."""
        return self.lse.numel() // self.num_heads

    def fits(self, batch: int, num_kv_splits: int) -> bool:
        return batch * num_kv_splits <= self.capacity and batch <= self.arrivals.shape[0]

    def views(self, batch: int, num_kv_splits: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mid_o, mid_lse)`` for one call: views, no allocation."""
        if not self.fits(batch, num_kv_splits):
            raise ValueError(
                f"workspace has no room for batch={batch} x num_kv_splits={num_kv_splits} "
                f"(capacity {self.capacity}, batch {self.arrivals.shape[0]})"
            )
        rows = batch * self.num_heads * num_kv_splits
        mid_o = self.o[: rows * self.head_dim].view(
            batch, self.num_heads, num_kv_splits, self.head_dim
        )
        return mid_o, self.lse[:rows].view(batch, self.num_heads, num_kv_splits)
