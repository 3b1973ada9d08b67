"""Launch choices of decode attention: how many splits a batch's keys are cut into, and the
kernel's launch shape, from the device's measured table (`benchmarks/kernel_micro.py
--tune-decode DIR`) or the defaults."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from sglang.kernels import tuning
from sglang.kernels._triton import interpreting, next_pow2, num_sms

MAX_NUM_KV_SPLITS = 64


# Programs per SM the split count aims at. On the H200 (benchmarks/kernel_micro.py, batch 64 x
# 4096 keys, 8 KV heads: 512 programs unsplit) one split read the keys at 89.5% of the copy
# bandwidth and four (the old target of 8 per SM) at 72.7%: each extra split adds a partial
# output to write and merge, and more resident programs did not hide more latency.
PROGRAMS_PER_SM = 3


def default_num_kv_splits(batch: int, num_kv_heads: int, device: torch.device) -> int:
    """Enough splits that every SM gets about `PROGRAMS_PER_SM` programs (a power of two,
    capped at ``MAX_NUM_KV_SPLITS``): small batches split their keys, large ones do not."""
    programs = max(batch * num_kv_heads, 1)
    want = triton.cdiv(PROGRAMS_PER_SM * num_sms(device), programs)
    return min(next_pow2(want), MAX_NUM_KV_SPLITS)


TUNING_KERNEL = "decode_attention"
# Up to this many keys one program per (request, KV head) beats splitting: the merge costs
# more than the keys (H200, batch 1, 160 keys: 7.2 us against 11.8 us with 64 splits; from
# 512 keys splitting wins).
ONE_SPLIT_KEYS = 256


@dataclass(frozen=True)
class DecodeLaunch:
    """Launch shape of the split-KV kernel: keys per block, warps, pipeline stages, up to how
    many keys a request is done by one program (no split, no merge), and that program's keys
    per block and pipeline stages (0: `block_n`, `num_stages`)."""

    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 2
    one_split_keys: int = ONE_SPLIT_KEYS
    one_split_block_n: int = 0
    one_split_stages: int = 0


def tuning_key(num_heads: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> str:
    return f"H{num_heads}_KV{num_kv_heads}_D{head_dim}_{str(dtype).removeprefix('torch.')}"


def decode_launch(batch: int, num_heads: int, num_kv_heads: int, head_dim: int,
                  dtype: torch.dtype, device: torch.device) -> DecodeLaunch:
    """The launch measured fastest on this device for the nearest batch size
    (`benchmarks/kernel_micro.py --tune-decode DIR`), else the default (fp32 tiles halve
    the block to stay in registers; the interpreter takes small blocks so tests cross them, and
    reads tables of the device key "cpu", which only tests write)."""
    entry = tuning.measured_entry(TUNING_KERNEL,
                                  tuning_key(num_heads, num_kv_heads, head_dim, dtype), batch,
                                  device)
    if entry is not None:
        return DecodeLaunch(**entry["launch"])
    if interpreting():
        return DecodeLaunch(16, 1, 1, one_split_keys=0)
    return DecodeLaunch(32) if dtype == torch.float32 else DecodeLaunch()
