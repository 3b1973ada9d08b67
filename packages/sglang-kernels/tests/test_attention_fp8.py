"""FP8 KV cache in the Triton kernels: store_kv quantizes with the layer's scale (saturating),
extend and decode attention read fp8 pools and dequantize with the scales.

Triton's interpreter handles float8 tensors (loads, widening casts, rounding stores), so these
run on CPU too. The references dequantize the same fp8 pool in fp32, so the only difference is
the kernels' arithmetic: the tolerances are those of the query dtype (ATTN_TOL).
"""

from __future__ import annotations

import pytest
import torch
from kernel_cases import ATTN_TOL, DEVICE, randn
from test_attention_kernels import HEAD_DIM, Pool, _lens

from sglang.kernels import decode_attention, extend_attention, store_kv
from sglang.kernels.reference import (
    decode_attention_ref,
    dequantize_fp8_ref,
    extend_attention_ref,
    quantize_fp8_ref,
    store_kv_ref,
)

FP8 = [pytest.param(torch.float8_e4m3fn, id="e4m3"), pytest.param(torch.float8_e5m2, id="e5m2")]
# fp32 and fp16 queries; bf16 is not computed correctly by the interpreter.
QDTYPES = [pytest.param(torch.float32, id="q32"), pytest.param(torch.float16, id="q16"),
           pytest.param(torch.bfloat16, id="q_bf16", marks=pytest.mark.gpu)]
K_SCALE, V_SCALE = 0.02, 0.05


@pytest.mark.parametrize("fp8", FP8)
@pytest.mark.parametrize("src", [torch.float32, torch.float16])
def test_store_kv_quantizes_like_the_reference(fp8, src):
    n, heads = 9, 2
    # Values up to ~40x the largest code times the scale: the big ones must saturate, not
    # turn into NaN/inf.
    k = (randn(n, heads, HEAD_DIM, dtype=torch.float32, seed=4) * 4.0).to(src)
    v = (randn(n, heads, HEAD_DIM, dtype=torch.float32, seed=5) * 4.0).to(src)
    k[0, 0, 0] = 1e4
    v[1, 1, 1] = -1e4
    # Subnormal codes, and tiny negatives that round to -0.
    k[2] *= torch.logspace(-9, 0, HEAD_DIM, device=DEVICE).to(src)
    v[3] *= torch.logspace(-9, 0, HEAD_DIM, device=DEVICE).to(src)
    loc = torch.randperm(20)[:n].to(DEVICE)
    got_k = torch.zeros(20, heads, HEAD_DIM, dtype=fp8, device=DEVICE)
    got_v = torch.zeros_like(got_k)
    want_k, want_v = got_k.clone(), got_v.clone()
    store_kv(got_k, got_v, loc, k, v, K_SCALE, V_SCALE)
    store_kv_ref(want_k, want_v, loc, k, v, K_SCALE, V_SCALE)
    # The same codes bit for bit: both divide in fp32 and round to nearest even.
    assert torch.equal(got_k.view(torch.uint8), want_k.view(torch.uint8))
    assert torch.equal(got_v.view(torch.uint8), want_v.view(torch.uint8))
    limit = torch.finfo(fp8).max
    assert got_k[loc[0], 0, 0].float() == limit and got_v[loc[1], 1, 1].float() == -limit
    assert torch.isfinite(got_k.float()).all() and torch.isfinite(got_v.float()).all()
    # Dequantized values sit within half a step of the originals (3 or 2 mantissa bits).
    rel = 2.0 ** -(4 if fp8 == torch.float8_e4m3fn else 3)
    back = dequantize_fp8_ref(got_k[loc], K_SCALE, torch.float32)
    inside = k.float().abs() < limit * K_SCALE
    err = (back - k.float()).abs()[inside]
    bound = (k.float().abs() * rel)[inside] + torch.finfo(fp8).smallest_normal * K_SCALE
    assert (err <= bound).all()


def _fp8_pool(lens: list[int], kv_heads: int, fp8: torch.dtype, seed: int) -> Pool:
    """A Pool whose buffers hold fp8 codes of x / scale (unused slots stay NaN)."""
    pool = Pool(lens, kv_heads, torch.float32, seed=seed)
    pool.k = quantize_fp8_ref(pool.k, K_SCALE, fp8)
    pool.v = quantize_fp8_ref(pool.v, V_SCALE, fp8)
    return pool


@pytest.mark.parametrize("fp8", FP8)
@pytest.mark.parametrize("qdtype", QDTYPES)
@pytest.mark.parametrize("gqa", [(2, 2), (4, 1)], ids=["mha", "gqa4"])
def test_extend_reads_fp8_pool(gqa, qdtype, fp8):
    heads, kv_heads = gqa
    prefix, extend = [0, 5, 16, 3], [7, 20, 1, 17]
    pool = _fp8_pool([p + e for p, e in zip(prefix, extend)], kv_heads, fp8, seed=0)
    q = randn(sum(extend), heads, HEAD_DIM, dtype=qdtype, seed=1)
    ext = _lens(extend)
    args = (q, pool.k, pool.v, pool.table, pool.rows, _lens(prefix), ext)
    scales = dict(k_scale=K_SCALE, v_scale=V_SCALE)
    got = extend_attention(*args, torch.cumsum(ext, 0) - ext, sm_scale=HEAD_DIM**-0.5,
                           max_extend_len=max(extend), **scales)
    want = extend_attention_ref(*args, sm_scale=HEAD_DIM**-0.5, **scales)
    assert got.dtype == qdtype and not got.isnan().any()
    torch.testing.assert_close(got, want, **ATTN_TOL[qdtype])
    # The scales are applied: without them the output is far off.
    unscaled = extend_attention_ref(*args, sm_scale=HEAD_DIM**-0.5)
    assert not torch.allclose(got.float(), unscaled.float(), atol=0.1)


@pytest.mark.parametrize("fp8", FP8)
@pytest.mark.parametrize("qdtype", QDTYPES)
@pytest.mark.parametrize("gqa", [(2, 2), (8, 1)], ids=["mha", "gqa8"])
def test_decode_reads_fp8_pool(gqa, qdtype, fp8):
    heads, kv_heads = gqa
    lens = [1, 16, 47, 5]
    pool = _fp8_pool(lens, kv_heads, fp8, seed=2)
    q = randn(len(lens), heads, HEAD_DIM, dtype=qdtype, seed=3)
    args = (q, pool.k, pool.v, pool.table, pool.rows, _lens(lens))
    scales = dict(k_scale=K_SCALE, v_scale=V_SCALE)
    got = decode_attention(*args, sm_scale=HEAD_DIM**-0.5, num_kv_splits=4, **scales)
    want = decode_attention_ref(*args, sm_scale=HEAD_DIM**-0.5, **scales)
    assert got.dtype == qdtype and not got.isnan().any()
    torch.testing.assert_close(got, want, **ATTN_TOL[qdtype])


def test_fp8_attention_stays_close_to_the_unquantized_pool():
    """End to end through the rounding: e4m3 keeps 3 mantissa bits (relative step 2^-3, error
    <= 2^-4 per element). An output is a convex mix of values, so the V rounding moves it by at
    most 2^-4 of the values' weighted size (~1 here for N(0, 1) values, up to ~2 for a few
    keys); the K rounding perturbs the weights a little on top. Mixes that cancel to a small
    output keep that absolute error, hence atol rather than rtol."""
    lens = [1, 16, 47, 5]
    exact = Pool(lens, 2, torch.float32, seed=2)
    q = randn(len(lens), 4, HEAD_DIM, dtype=torch.float32, seed=3)
    rest = (exact.table, exact.rows, _lens(lens))
    want = decode_attention_ref(q, exact.k, exact.v, *rest, sm_scale=HEAD_DIM**-0.5)
    k8 = quantize_fp8_ref(exact.k, K_SCALE, torch.float8_e4m3fn)
    v8 = quantize_fp8_ref(exact.v, V_SCALE, torch.float8_e4m3fn)
    got = decode_attention(q, k8, v8, *rest, sm_scale=HEAD_DIM**-0.5, num_kv_splits=2,
                           k_scale=K_SCALE, v_scale=V_SCALE)
    torch.testing.assert_close(got, want, atol=2**-3, rtol=2**-4)


def test_mismatched_pool_dtypes_are_rejected():
    pool = _fp8_pool([4], 1, torch.float8_e4m3fn, seed=0)
    q = randn(1, 1, HEAD_DIM, dtype=torch.float32)
    with pytest.raises(ValueError, match="v_buffer"):
        decode_attention(q, pool.k, pool.v.float(), pool.table, pool.rows, _lens([4]),
                         sm_scale=0.1)
