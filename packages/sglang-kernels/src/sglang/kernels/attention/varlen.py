"""Extend attention over contiguous per-request K/V (varlen), for prefill on CUDA: our Triton
flash kernel (`flash.py`) where this device's table says it beat torch's FlashAttention-2 on
the shape, torch's kernel otherwise.

torch ships FlashAttention-2 inside every CUDA build (the kernel behind
``scaled_dot_product_attention``'s flash backend) and exposes its variable-length entry as
``aten._flash_attention_forward`` with cumulative sequence offsets: a well-kept library kernel
that needs no extra wheel, and the fallback wherever our kernel has not been measured. On the
H200 our Triton kernel (TMA loads, grouped heads per program) runs a 4 x 2048 prefill of
Llama-3-8B heads in ~0.31 ms against torch's 0.49 ms (docs/benchmarks.md). The Triton
backend hands this entry the extend batches either kernel can take: fp16/bf16 queries and
pools, no soft-capping, no sliding window, head dims up to 256 in multiples of 8, compute
capability 8.0 or newer.

Keys are contiguous per request here, not paged: a plain prefill passes the new tokens' K/V as
they are, and a batch over a cached prefix first gathers each request's keys out of the pool
(`gather_kv_slots` once per batch, one `index_select` per layer), which costs a read and a write
of the request's K/V, small beside the attention's FLOPs at prefill lengths.
"""

from __future__ import annotations

import functools

import torch

from sglang.kernels.attention.flash import flash_attention, flash_measured_faster

FLASH_DTYPES = (torch.float16, torch.bfloat16)
MAX_HEAD_DIM = 256


@functools.cache
def _device_ok(index: int) -> bool:
    major, _ = torch.cuda.get_device_capability(index)
    return major >= 8 and hasattr(torch.ops.aten, "_flash_attention_forward")


def flash_varlen_supported(kv: torch.Tensor, q_dtype: torch.dtype | None = None) -> bool:
    """Whether `varlen_extend_attention` can run on keys like `kv` (``[..., head_dim]``) for
    queries of `q_dtype` (default: kv's). An fp8 pool or fp32 activations cannot."""
    head_dim = kv.shape[-1]
    return (
        kv.is_cuda
        and kv.dtype in FLASH_DTYPES
        and (q_dtype or kv.dtype) == kv.dtype
        and head_dim % 8 == 0
        and head_dim <= MAX_HEAD_DIM
        and _device_ok(kv.device.index if kv.device.index is not None else 0)
    )


def cumulative_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """``[0, l0, l0 + l1, ...]`` as int32, the offsets the varlen kernel takes."""
    out = torch.zeros(lengths.numel() + 1, dtype=torch.int32, device=lengths.device)
    torch.cumsum(lengths, 0, out=out[1:])
    return out


def gather_kv_slots(
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    seq_lens: torch.Tensor,
    cu_seq_k: torch.Tensor,
    total_k: int,
) -> torch.Tensor:
    """The pool slots of every request's keys ``[0, seq_lens[b])``, one request after another:
    ``[total_k]`` int64, ready for ``index_select`` on a layer's K/V pool. `total_k` (the
    host-side ``sum(seq_lens)``) sizes the result without a device sync."""
    rows = torch.repeat_interleave(req_pool_indices.long(), seq_lens, output_size=total_k)
    starts = torch.repeat_interleave(cu_seq_k[:-1].long(), seq_lens, output_size=total_k)
    positions = torch.arange(total_k, device=seq_lens.device) - starts
    return req_to_token[rows, positions].long()


def varlen_extend_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor,
    max_q: int,
    max_k: int,
    *,
    sm_scale: float,
) -> torch.Tensor:
    """Causal attention of each request's new tokens over its keys, the last query aligned
    with the last key (a cached prefix sits before the new tokens).

    Args:
        q: ``[total_q, num_heads, head_dim]``, the new tokens one request after another.
        k, v: ``[total_k, num_kv_heads, head_dim]``, each request's keys in order (its cached
            prefix, then its new tokens); ``num_heads`` a multiple of ``num_kv_heads``.
        cu_seq_q, cu_seq_k: ``[batch + 1]`` int32 offsets (`cumulative_lengths`).
        max_q, max_k: host ints, the longest request's new tokens and keys.

    Returns:
        ``[total_q, num_heads, head_dim]`` in q's dtype.
    """
    if not flash_varlen_supported(k, q.dtype):
        raise ValueError(
            f"varlen_extend_attention needs CUDA fp16/bf16 q and K/V of the same dtype with "
            f"head_dim a multiple of 8 up to {MAX_HEAD_DIM} on compute capability >= 8.0 "
            f"(got q {q.dtype} on {q.device}, K/V {k.dtype}, head_dim {q.shape[-1]})"
        )
    if flash_measured_faster(q, k.shape[1]):
        return flash_attention(q, k, v, cu_seq_q, cu_seq_k, max_q, sm_scale=sm_scale)
    out = torch.ops.aten._flash_attention_forward(
        q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, 0.0, True, False, scale=sm_scale
    )
    return out[0]
