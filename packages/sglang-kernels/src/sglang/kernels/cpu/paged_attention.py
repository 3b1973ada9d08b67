"""Attention over the paged KV pool on the CPU: the C kernels of ``paged_attention.c`` through
ctypes.

- `paged_attention_cpu`: each query token attends to its request's first `kv_lens[t]` keys
  (the last `window` of them with a sliding window), read from the pool through `req_to_token`
  without gathering or padding; GQA heads share each key load, and so do consecutive tokens
  whose rows hold the same slots (a shared prompt prefix, one extend's earlier keys), up to
  16 query rows at a time.
- `rope_store_kv_cpu`: rotary on q (in place) and k, and the write of k and v into the pool,
  bit for bit the torch rotary's arithmetic.

Both return False (nothing done) where they do not apply: no compiler, a dtype other than
float32, a head_dim that is not a multiple of 16 (or above 256), more than 16 query heads per
KV head, or a layout they cannot address; the caller then runs its torch path.
"""

from __future__ import annotations

import torch

from sglang.kernels.cpu.loader import load_library

MAX_HEAD_DIM = 256
MAX_GROUP = 16


def _rows_ok(t: torch.Tensor) -> bool:
    """[tokens, heads, head_dim] with heads and features contiguous (a token stride of its own
    is fine: q/k/v are views of one fused projection)."""
    return (t.dim() == 3 and t.dtype == torch.float32 and t.is_cpu
            and t.stride(2) == 1 and t.stride(1) == t.shape[2])


def _pool_ok(buf: torch.Tensor) -> bool:
    return buf.dtype == torch.float32 and buf.is_cpu and buf.is_contiguous()


def supports(num_heads: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> bool:
    """Whether the kernels take this geometry (and a compiled library exists)."""
    return (dtype == torch.float32 and head_dim % 16 == 0 and 16 <= head_dim <= MAX_HEAD_DIM
            and num_kv_heads > 0 and num_heads % num_kv_heads == 0
            and num_heads // num_kv_heads <= MAX_GROUP and load_library() is not None)


def paged_attention_cpu(
    q: torch.Tensor,  # [T, H, D] float32
    k_buf: torch.Tensor,  # [slots, KVH, D] float32, contiguous
    v_buf: torch.Tensor,
    req_to_token: torch.Tensor,  # [rows, max_context] int64, contiguous
    rows: torch.Tensor,  # [T] int64: each query's row of req_to_token
    kv_lens: torch.Tensor,  # [T] int64: keys visible to each query (its position + 1)
    scale: float,
    *,
    window: int | None = None,
    logit_cap: float = 0.0,
    out: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """softmax(q k^T * scale) v per query token over its request's keys [start, kv_len) with
    start = max(0, kv_len - window); `logit_cap` > 0 soft-caps the scaled scores. Returns
    [T, H, D] float32, or None where the kernel does not apply."""
    t, h, d = q.shape
    kvh = k_buf.shape[1]
    if not (_rows_ok(q) and _pool_ok(k_buf) and _pool_ok(v_buf) and v_buf.shape == k_buf.shape
            and k_buf.shape[2] == d and supports(h, kvh, d, q.dtype)
            and req_to_token.dtype == torch.int64 and req_to_token.is_contiguous()
            and rows.dtype == torch.int64 and kv_lens.dtype == torch.int64):
        return None
    rows, kv_lens = rows.contiguous(), kv_lens.contiguous()
    if out is None:
        out = torch.empty(t, h, d, dtype=torch.float32)
    lib = load_library()
    assert lib is not None  # supports() checked
    rc = lib.sgl_paged_attention(
        q.data_ptr(), q.stride(0), k_buf.data_ptr(), v_buf.data_ptr(), req_to_token.data_ptr(),
        req_to_token.stride(0), rows.data_ptr(), kv_lens.data_ptr(), t, h, kvh, d,
        int(window or 0), float(scale), float(logit_cap), out.data_ptr(), torch.get_num_threads(),
    )
    if rc:
        raise RuntimeError("paged_attention_cpu: the C kernel rejected its arguments")
    return out


def rope_store_kv_cpu(
    q: torch.Tensor,  # [T, H, D] float32, rotated in place
    k: torch.Tensor,  # [T, KVH, D]
    v: torch.Tensor,  # [T, KVH, D]
    positions: torch.Tensor,  # [T] int64
    cos: torch.Tensor,  # [max_position, rot_dim // 2] float32
    sin: torch.Tensor,
    k_buf: torch.Tensor,  # [slots, KVH, D] float32, contiguous
    v_buf: torch.Tensor,
    loc: torch.Tensor,  # [T] int64: each token's pool slot
    *,
    is_neox: bool = True,
) -> bool:
    """Rotate q in place and write rotated k and plain v into the pools at `loc`; False
    (nothing done) where the kernel does not apply."""
    t, h, d = q.shape
    kvh = k.shape[1]
    rot = 2 * cos.shape[-1]
    if not (_rows_ok(q) and _rows_ok(k) and _rows_ok(v) and _pool_ok(k_buf) and _pool_ok(v_buf)
            and k.shape == v.shape and k.shape[0] == t and k_buf.shape[1:] == k.shape[1:]
            and k.shape[2] == d and cos.dtype == torch.float32 and sin.dtype == torch.float32
            and cos.is_contiguous() and sin.is_contiguous() and cos.shape == sin.shape
            and 2 <= rot <= d and positions.dim() == 1 and positions.dtype == torch.int64 and loc.dtype == torch.int64
            and load_library() is not None):
        return False
    positions, loc = positions.contiguous(), loc.contiguous()
    lib = load_library()
    assert lib is not None
    rc = lib.sgl_rope_store_kv(
        q.data_ptr(), q.stride(0), k.data_ptr(), k.stride(0), v.data_ptr(), v.stride(0),
        positions.data_ptr(), cos.data_ptr(), sin.data_ptr(), rot, int(is_neox), t, h, kvh, d,
        k_buf.data_ptr(), v_buf.data_ptr(), loc.data_ptr(), torch.get_num_threads(),
    )
    if rc:
        raise RuntimeError("rope_store_kv_cpu: the C kernel rejected its arguments")
    return True
