"""Plain-torch references, one per kernel, with the kernels' signatures and semantics.

They are the test oracles and a fallback where Triton cannot run. Written for clarity, not
speed: attention loops over requests and computes in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# pack/unpack re-exported: the quant_gemm tests and the runtime build weights with them.
from sglang.kernels.quant_layout import (  # noqa: F401
    check_quant_args,
    dequantize_weight,
    pack_quant_weight,
    unpack_quant_weight,
)

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def quantize_fp8_ref(x: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """``x / scale`` in fp32, saturated to the fp8 format's largest finite value (a plain cast
    gives NaN for e4m3fn, inf for e5m2), rounded to nearest even."""
    limit = float(torch.finfo(dtype).max)
    return (x.float() / scale).clamp(-limit, limit).to(dtype)


def dequantize_fp8_ref(q: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """``q * scale`` formed in fp32 and rounded once to ``dtype``."""
    return (q.float() * scale).to(dtype)


def store_kv_ref(
    k_buffer: torch.Tensor, v_buffer: torch.Tensor, loc: torch.Tensor, k: torch.Tensor,
    v: torch.Tensor, k_scale: float = 1.0, v_scale: float = 1.0,
) -> None:
    if k_buffer.dtype in FP8_DTYPES:
        k = quantize_fp8_ref(k, k_scale, k_buffer.dtype)
        v = quantize_fp8_ref(v, v_scale, v_buffer.dtype)
    k_buffer[loc.long()] = k.to(k_buffer.dtype)
    v_buffer[loc.long()] = v.to(v_buffer.dtype)


def _attend(
    q: torch.Tensor,  # [n, heads, d], queries at absolute positions q_pos
    keys: torch.Tensor,  # [seq, kv_heads, d], positions 0..seq-1
    values: torch.Tensor,
    q_pos: torch.Tensor,  # [n]
    sm_scale: float,
    sliding_window: int,
    logit_cap: float,
) -> torch.Tensor:
    group = q.shape[1] // keys.shape[1]
    k = keys.float().repeat_interleave(group, dim=1)
    v = values.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("nhd,shd->hns", q.float(), k) * sm_scale
    if logit_cap > 0:
        scores = logit_cap * torch.tanh(scores / logit_cap)
    k_pos = torch.arange(keys.shape[0], device=q.device)
    visible = k_pos[None, :] <= q_pos[:, None]
    if sliding_window > 0:
        visible &= k_pos[None, :] > q_pos[:, None] - sliding_window
    scores = scores.masked_fill(~visible, float("-inf"))
    return torch.einsum("hns,shd->nhd", torch.softmax(scores, dim=-1), v)


def _kv_rows(
    k_buffer: torch.Tensor, v_buffer: torch.Tensor, slots: torch.Tensor, k_scale: float,
    v_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pool rows at ``slots`` as attention reads them (fp8 codes dequantized in fp32)."""
    keys, values = k_buffer[slots], v_buffer[slots]
    if k_buffer.dtype in FP8_DTYPES:
        return (dequantize_fp8_ref(keys, k_scale, torch.float32),
                dequantize_fp8_ref(values, v_scale, torch.float32))
    return keys, values


def extend_attention_ref(
    q: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    prefix_lens: torch.Tensor,
    extend_lens: torch.Tensor,
    *,
    sm_scale: float,
    sliding_window: int = -1,
    logit_cap: float = 0.0,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> torch.Tensor:
    """Reference of ``extend_attention`` (``extend_start_loc`` is implied by ``extend_lens``);
    an fp8 pool is dequantized with ``k_scale``/``v_scale`` first."""
    out = torch.empty_like(q)
    start = 0
    for row, prefix, n in zip(
        req_pool_indices.tolist(), prefix_lens.tolist(), extend_lens.tolist(), strict=True
    ):
        slots = req_to_token[row, : prefix + n].long()
        q_pos = torch.arange(prefix, prefix + n, device=q.device)
        keys, values = _kv_rows(k_buffer, v_buffer, slots, k_scale, v_scale)
        o = _attend(q[start : start + n], keys, values, q_pos, sm_scale,
                    sliding_window, logit_cap)
        out[start : start + n] = o.to(q.dtype)
        start += n
    return out


def decode_attention_ref(
    q: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    seq_lens: torch.Tensor,
    *,
    sm_scale: float,
    logit_cap: float = 0.0,
    sliding_window: int = -1,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> torch.Tensor:
    """Reference of ``decode_attention``: the query sits at position ``seq_len - 1``; an fp8
    pool is dequantized with ``k_scale``/``v_scale`` first."""
    out = torch.zeros_like(q)
    for i, (row, n) in enumerate(zip(req_pool_indices.tolist(), seq_lens.tolist(), strict=True)):
        if n == 0:
            continue
        slots = req_to_token[row, :n].long()
        q_pos = torch.tensor([n - 1], device=q.device)
        keys, values = _kv_rows(k_buffer, v_buffer, slots, k_scale, v_scale)
        o = _attend(q[i : i + 1], keys, values, q_pos, sm_scale,
                    sliding_window, logit_cap)
        out[i] = o[0].to(q.dtype)
    return out


def rmsnorm_ref(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    summed = x if residual is None else (x.float() + residual.float()).to(x.dtype)
    x32 = summed.float()
    normed = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    out = (normed.float() * weight.float()).to(x.dtype)
    return out if residual is None else (out, summed)


def rotary_embedding_ref(
    positions: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    is_neox: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Out-of-place reference of ``rotary_embedding``."""
    rotary_dim = cos_sin_cache.shape[-1]
    cos, sin = cos_sin_cache[positions.long()].float().unsqueeze(1).chunk(2, dim=-1)

    def rotate(x: torch.Tensor) -> torch.Tensor:
        rot, rest = x[..., :rotary_dim].float(), x[..., rotary_dim:]
        if is_neox:
            x1, x2 = rot.chunk(2, dim=-1)
            out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        else:
            x1, x2 = rot[..., 0::2], rot[..., 1::2]
            out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
        return torch.cat((out.to(x.dtype), rest), dim=-1)

    return rotate(q), rotate(k)


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    gate, up = x.float().chunk(2, dim=-1)
    return (F.silu(gate) * up).to(x.dtype)


def gelu_and_mul_ref(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    gate, up = x.float().chunk(2, dim=-1)
    return (F.gelu(gate, approximate=approximate) * up).to(x.dtype)


def gemv_ref(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, **_: object
) -> torch.Tensor:
    """Reference of `gemv`: x W^T (+ b) accumulated in fp32, returned in x's dtype."""
    y = x.float() @ weight.float().t()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def fused_moe_ref(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
) -> torch.Tensor:
    """Each token through each of its chosen experts' SwiGLU MLP, one at a time, in fp32."""
    inter = w13.shape[1] // 2
    out = torch.zeros(x.shape[0], x.shape[1], dtype=torch.float32, device=x.device)
    for t in range(x.shape[0]):
        xt = x[t].float()
        for weight, e in zip(topk_weights[t].tolist(), topk_ids[t].tolist(), strict=True):
            gate_up = w13[e].float() @ xt
            h = torch.nn.functional.silu(gate_up[:inter]) * gate_up[inter:]
            out[t] += weight * (w2[e].float() @ h)
    return out.to(x.dtype)


def align_by_expert_ref(
    topk_ids: torch.Tensor, num_experts: int, block_m: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference of `align_by_expert` in torch ops: (sorted_ids, expert_ids, num_padded)."""
    flat = topk_ids.reshape(-1).to(torch.int64)
    num_pairs = flat.numel()
    # scatter_add, not bincount: bincount's output size depends on the data (a host sync).
    counts = torch.zeros(num_experts, dtype=torch.int64, device=flat.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m
    ends = torch.cumsum(padded, 0)
    starts = ends - padded
    order = torch.argsort(flat, stable=True)
    sorted_experts = flat[order]
    first_of_expert = torch.cumsum(counts, 0) - counts
    rank = torch.arange(num_pairs, device=flat.device) - first_of_expert[sorted_experts]
    # Worst case: every expert's run ends one row into a fresh block.
    max_padded = num_pairs + num_experts * (block_m - 1)
    max_padded = -(-max_padded // block_m) * block_m
    sorted_ids = torch.full((max_padded,), num_pairs, dtype=torch.int32, device=flat.device)
    sorted_ids[starts[sorted_experts] + rank] = order.to(torch.int32)
    block_starts = torch.arange(0, max_padded, block_m, device=flat.device)
    expert_ids = torch.searchsorted(ends, block_starts, right=True).clamp_(max=num_experts - 1)
    return sorted_ids, expert_ids.to(torch.int32), ends[-1:].to(torch.int32)


def quant_gemm_ref(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
    bits: int, group_size: int,
) -> torch.Tensor:
    """Reference of `quant_gemm`: unpack, dequantize and multiply in fp32; x's dtype out."""
    check_quant_args(x, qweight, scales, zeros, bits, group_size)
    w = dequantize_weight(qweight, scales, zeros, bits, group_size)
    return (x.float() @ w).to(x.dtype)
