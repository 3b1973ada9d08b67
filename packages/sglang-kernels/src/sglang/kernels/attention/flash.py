"""Causal flash attention over ragged batches with contiguous K/V (Triton), for prefill.

The same contract as torch's FlashAttention-2 varlen entry (`varlen.py`): the new tokens of
every request one after another, each request's keys (cached prefix, then its new tokens)
contiguous, cumulative offsets, the last query aligned with the last key. Unlike
`extend_attention`, keys are not gathered through ``req_to_token`` per block, so Hopper's
bulk copies (TMA, host-side tensor descriptors) can feed the tensor cores.

What makes it fast, beside the tensor cores: the keys every query of a block sees are streamed
without a mask and only the blocks on the diagonal pay for one; the softmax runs in base 2 with
the scale folded into one multiply-add per score; the heaviest query blocks (most keys) of all
heads are launched first so the ragged tail of a causal batch stays short; a program may take
several query heads of one KV head as its rows, so each K/V tile it loads serves all of them.
Launch shapes come from a table measured per device (`flash_attention_tune`), which also
records torch's FlashAttention-2 on the same work: `varlen_extend_attention` runs this kernel
only where it measured faster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sglang.kernels import tuning
from sglang.kernels._triton import check_device, dot_precision, interpreting, next_pow2

TUNING_KERNEL = "flash_attention"
LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class FlashLaunch:
    """One launch shape: query rows and keys per block, warps, pipeline stages, whether K/V
    arrive through tensor descriptors (TMA) instead of pointer loads, and how many query heads
    of one KV head share a program's rows (`pack`; capped by the group size)."""

    block_m: int = 128
    block_n: int = 64
    num_warps: int = 8
    num_stages: int = 3
    tma: bool = False
    pack: int = 1


def tuning_key(num_heads: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> str:
    return f"H{num_heads}_KV{num_kv_heads}_D{head_dim}_{str(dtype).removeprefix('torch.')}"


@triton.jit
def _load_rows(desc_or_ptr, row0, col0, stride_t, offs_r, offs_d, row_end,
               HEAD_DIM: tl.constexpr, TMA: tl.constexpr, MASK_ROWS: tl.constexpr):
    """A [rows, BLOCK_D] tile of one head starting at token `row0`. Descriptor loads fill
    rows past the tensor with zeros and read a neighbour request's rows past `row_end`,
    which the caller masks out of the scores; pointer loads mask them when asked."""
    if TMA:
        tile = desc_or_ptr.load([row0, col0])
    else:
        rows = (row0 + offs_r).to(tl.int64)
        ptrs = desc_or_ptr + rows[:, None] * stride_t + col0 + offs_d[None, :]
        if MASK_ROWS:
            mask = ((row0 + offs_r) < row_end)[:, None] & (offs_d < HEAD_DIM)[None, :]
            tile = tl.load(ptrs, mask=mask, other=0.0)
        elif HEAD_DIM == offs_d.shape[0]:
            tile = tl.load(ptrs)  # no mask at all: the loop's loads become async copies
        else:
            tile = tl.load(ptrs, mask=(offs_d < HEAD_DIM)[None, :], other=0.0)
    return tile


@triton.jit
def _attend(acc, l_i, m_i, q, K, V, k_start, k_end, col0, lo, hi, q_pos, scale,
            stride_kt, stride_vt, offs_n, offs_d,
            HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL_MASK: tl.constexpr,
            TMA: tl.constexpr, PRECISION: tl.constexpr):
    """The online softmax over keys [lo, hi) (offsets within the request), in base 2."""
    for start in range(lo, hi, BLOCK_N):
        k = _load_rows(K, k_start + start, col0, stride_kt, offs_n, offs_d, k_end,
                       HEAD_DIM, TMA, CAUSAL_MASK)
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        if CAUSAL_MASK:
            visible = (start + offs_n)[None, :] <= q_pos[:, None]
            qk = tl.where(visible, qk * scale, -1.0e30)
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            qk = qk - m_new[:, None]
        else:
            m_new = tl.maximum(m_i, tl.max(qk, 1) * scale)
            qk = qk * scale - m_new[:, None]
        p = tl.math.exp2(qk)
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = _load_rows(V, k_start + start, col0, stride_vt, offs_n, offs_d, k_end,
                       HEAD_DIM, TMA, CAUSAL_MASK)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _flash_kernel(
    Q, K, V, Out, CuQ, CuK, scale,
    stride_qt, stride_kt, stride_vt, stride_ot,
    NUM_HEADS: tl.constexpr, GROUP: tl.constexpr, PACK: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    TMA: tl.constexpr, PRECISION: tl.constexpr,
):
    # A program takes BLOCK_M // PACK tokens of PACK query heads that share one KV head: its
    # rows are (token, head) pairs, so every key and value tile it loads serves PACK heads.
    CHUNKS: tl.constexpr = NUM_HEADS // PACK
    # Query blocks in reverse over the whole grid (heads vary fastest): the ones that see the
    # most keys start first, so a causal batch ends on short programs.
    block = tl.num_programs(1) - 1 - tl.program_id(1)
    pid = tl.program_id(0)
    req = pid // CHUNKS
    head0 = (pid % CHUNKS) * PACK
    q_start = tl.load(CuQ + req)
    q_len = tl.load(CuQ + req + 1) - q_start
    TOKENS: tl.constexpr = BLOCK_M // PACK
    m_start = block * TOKENS
    if m_start >= q_len:
        return
    k_start = tl.load(CuK + req)
    k_len = tl.load(CuK + req + 1) - k_start
    prefix = k_len - q_len
    rows = tl.arange(0, BLOCK_M)
    token = m_start + rows // PACK
    head = head0 + rows % PACK
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = (token < q_len)[:, None] & (offs_d < HEAD_DIM)[None, :]
    q_ptrs = (Q + (q_start + token).to(tl.int64)[:, None] * stride_qt
              + (head * HEAD_DIM)[:, None] + offs_d[None, :])
    q = tl.load(q_ptrs, mask=row_ok, other=0.0)
    q_pos = prefix + token

    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    kv_col = (head0 // GROUP) * HEAD_DIM
    # Every row of the block sees the keys before its first token's position: no mask.
    seen_by_all = ((prefix + m_start) // BLOCK_N) * BLOCK_N
    acc, l_i, m_i = _attend(acc, l_i, m_i, q, K, V, k_start, k_start + k_len, kv_col,
                            0, seen_by_all, q_pos, scale, stride_kt, stride_vt, offs_n, offs_d,
                            HEAD_DIM, BLOCK_N, False, TMA, PRECISION)
    diagonal_end = tl.minimum(prefix + m_start + TOKENS, k_len)
    acc, l_i, m_i = _attend(acc, l_i, m_i, q, K, V, k_start, k_start + k_len, kv_col,
                            seen_by_all, diagonal_end, q_pos, scale, stride_kt, stride_vt,
                            offs_n, offs_d, HEAD_DIM, BLOCK_N, True, TMA, PRECISION)

    out = acc * (1.0 / l_i)[:, None]
    o_ptrs = (Out + (q_start + token).to(tl.int64)[:, None] * stride_ot
              + (head * HEAD_DIM)[:, None] + offs_d[None, :])
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok)


def default_launch(head_dim: int, dtype: torch.dtype) -> FlashLaunch:
    if interpreting():
        return FlashLaunch(16, 16, 1, 1)  # tiny test shapes still cross block boundaries
    if dtype == torch.float32:
        return FlashLaunch(64, 32, 4, 1)
    return FlashLaunch(128, 64, 8, 3) if head_dim <= 128 else FlashLaunch(64, 32, 8, 2)


def _launch(q: torch.Tensor, num_kv_heads: int) -> FlashLaunch:
    _, num_heads, head_dim = q.shape
    measured = tuning.measured_config(
        FlashLaunch, TUNING_KERNEL, tuning_key(num_heads, num_kv_heads, head_dim, q.dtype), 1,
        q.device)
    return measured or default_launch(head_dim, q.dtype)


def flash_measured_faster(q: torch.Tensor, num_kv_heads: int) -> bool:
    """Whether this device's table holds a launch for q's shape that beat torch's
    FlashAttention-2 when it was tuned (`flash_attention_tune` times both)."""
    if not q.is_cuda:
        return False
    _, num_heads, head_dim = q.shape
    entry = tuning.lookup(TUNING_KERNEL, tuning_key(num_heads, num_kv_heads, head_dim, q.dtype),
                          1, tuning.device_key(q.device))
    return entry is not None and entry.get("ms", math.inf) < entry.get("torch_flash_ms", 0.0)


def _rows_2d(t: torch.Tensor) -> torch.Tensor:
    """[tokens, heads, dim] as the [tokens, heads * dim] matrix the kernel indexes."""
    if t.stride(2) != 1 or t.stride(1) != t.shape[2]:
        t = t.contiguous()
    return t.as_strided((t.shape[0], t.shape[1] * t.shape[2]), (t.stride(0), 1))


def _operand(t2: torch.Tensor, rows: int, head_dim: int, tma: bool):
    if not tma:
        return t2
    from triton.tools.tensor_descriptor import TensorDescriptor

    return TensorDescriptor(t2, list(t2.shape), list(t2.stride()), [rows, head_dim])


def tma_applies(head_dim: int, *tensors: torch.Tensor) -> bool:
    """Tensor descriptors need a power-of-two head tile and 16-byte aligned rows."""
    pow2 = head_dim == next_pow2(head_dim)
    return pow2 and all(t.data_ptr() % 16 == 0 and (t.stride(0) * t.element_size()) % 16 == 0
                        for t in tensors)


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor,
    max_q: int,
    *,
    sm_scale: float,
    out: torch.Tensor | None = None,
    launch: FlashLaunch | None = None,
) -> torch.Tensor:
    """Causal attention of each request's new tokens over its keys, the last query aligned
    with the last key.

    Args:
        q: ``[total_q, num_heads, head_dim]`` fp16/bf16 (fp32 for tests), the new tokens one
            request after another.
        k, v: ``[total_k, num_kv_heads, head_dim]``, each request's keys in order (its cached
            prefix, then its new tokens); ``num_heads`` a multiple of ``num_kv_heads``.
        cu_seq_q, cu_seq_k: ``[batch + 1]`` int32 offsets (`cumulative_lengths`); every
            request has at least as many keys as new tokens.
        max_q: a host int ``>= max`` new tokens of a request; sizes the grid.
        launch: a launch shape (default: the device's measured one, else a heuristic).

    Returns:
        ``out``: ``[total_q, num_heads, head_dim]`` in q's dtype; scores and softmax in fp32.
    """
    total_q, num_heads, head_dim = q.shape
    num_kv_heads = k.shape[1]
    if num_heads % num_kv_heads or k.shape != v.shape or k.shape[2] != head_dim:
        raise ValueError(f"flash_attention: q {tuple(q.shape)} and K/V {tuple(k.shape)}/"
                         f"{tuple(v.shape)} need equal head_dim and heads a multiple of KV heads")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"flash_attention: q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype})")
    check_device(q, k, v, cu_seq_q, cu_seq_k)
    if out is None:
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
    elif out.shape != q.shape or out.stride(2) != 1 or out.stride(1) != head_dim:
        raise ValueError(f"flash_attention: out {tuple(out.shape)} must be q's shape with each "
                         "token's heads contiguous")
    batch = cu_seq_q.numel() - 1
    if total_q == 0 or batch == 0 or max_q <= 0:
        return out
    cfg = launch or _launch(q, num_kv_heads)
    q2, k2, v2, o2 = (_rows_2d(t) for t in (q, k, v, out))
    tma = cfg.tma and not interpreting() and tma_applies(head_dim, k2, v2)
    pack = math.gcd(cfg.pack, num_heads // num_kv_heads)
    if cfg.block_m % pack:
        raise ValueError(f"flash_attention: {cfg} packs {pack} heads into {cfg.block_m} rows")
    grid = (batch * (num_heads // pack), triton.cdiv(max_q, cfg.block_m // pack))
    _flash_kernel[grid](
        q2, _operand(k2, cfg.block_n, head_dim, tma),
        _operand(v2, cfg.block_n, head_dim, tma), o2, cu_seq_q, cu_seq_k,
        float(sm_scale) * LOG2E,
        q2.stride(0), k2.stride(0), v2.stride(0), o2.stride(0),
        NUM_HEADS=num_heads, GROUP=num_heads // num_kv_heads, PACK=pack, HEAD_DIM=head_dim,
        BLOCK_D=next_pow2(head_dim, 16), BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        TMA=tma, PRECISION=dot_precision(q.dtype),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out
