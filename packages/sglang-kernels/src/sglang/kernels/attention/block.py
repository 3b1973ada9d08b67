"""The online-softmax step both attention kernels run over each block of keys."""

from __future__ import annotations

import triton
import triton.language as tl

from sglang.kernels._triton import soft_cap


@triton.jit
def attend_block(
    q, m_i, l_i, acc,
    slot_row, k_base, v_base, offs_n, mask_n, visible, offs_d, mask_d,
    stride_kt, stride_vt, sm_scale, logit_cap,
    USE_CAP: tl.constexpr, PRECISION: tl.constexpr, KV_FP8: tl.constexpr,
):
    """Attend the query rows `q` to the keys at positions `offs_n` of one request: their slots
    come from the request's `req_to_token` row (`slot_row`), K and V are gathered from the pool
    (`k_base`/`v_base`: one KV head), scores outside `visible` are dropped, and the running max
    `m_i`, sum `l_i` and unnormalised output `acc` are updated and returned.

    With KV_FP8 the tiles arrive as fp8 codes and are widened to `q`'s dtype (exact: every fp8
    value is representable in fp16/bf16/fp32); the per-layer scales are applied by the caller to
    the fp32 scores (k_scale folded into `sm_scale`) and to the final output (v_scale), which
    equals multiplying every tile by its scale."""
    slots = tl.load(slot_row + offs_n, mask=mask_n, other=0).to(tl.int64)
    k = tl.load(
        k_base + slots[None, :] * stride_kt + offs_d[:, None],
        mask=mask_n[None, :] & mask_d[:, None], other=0.0,
    )
    if KV_FP8:
        k = k.to(q.dtype)
    qk = tl.dot(q.to(k.dtype), k, input_precision=PRECISION) * sm_scale
    if USE_CAP:
        qk = soft_cap(qk, logit_cap)
    qk = tl.where(visible, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    p = tl.exp(qk - m_new[:, None])
    alpha = tl.exp(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = tl.load(
        v_base + slots[:, None] * stride_vt + offs_d[None, :],
        mask=mask_n[:, None] & mask_d[None, :], other=0.0,
    )
    if KV_FP8:
        v = v.to(q.dtype)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc
