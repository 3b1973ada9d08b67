"""KV store, RMSNorm, rotary embedding and gated activations against the torch references."""

from __future__ import annotations

import math

import pytest
import torch
from kernel_cases import DEVICE, DTYPES, ELEM_TOL, randn

from sglang.kernels import (
    gelu_and_mul,
    rmsnorm,
    rope_cos_sin_cache,
    rope_inv_freq,
    rotary_embedding,
    rotary_embedding_and_store_kv,
    silu_and_mul,
    store_kv,
)
from sglang.kernels.reference import (
    gelu_and_mul_ref,
    rmsnorm_ref,
    rotary_embedding_ref,
    silu_and_mul_ref,
    store_kv_ref,
)

LLAMA3 = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_store_kv_writes_only_the_given_slots(index_dtype, dtype):
    # fp32 activations into a pool of `dtype`, through views of a fused KV projection.
    kv = randn(5, 2 * 3 * 24, dtype=torch.float32)
    k, v = kv[:, : 3 * 24].view(5, 3, 24), kv[:, 3 * 24 :].view(5, 3, 24)
    loc = torch.tensor([9, 0, 4, 17, 3], dtype=index_dtype, device=DEVICE)
    got_k = randn(20, 3, 24, dtype=dtype, seed=1)
    got_v = randn(20, 3, 24, dtype=dtype, seed=2)
    want_k, want_v = got_k.clone(), got_v.clone()
    store_kv(got_k, got_v, loc, k, v)
    store_kv_ref(want_k, want_v, loc, k, v)
    assert torch.equal(got_k, want_k) and torch.equal(got_v, want_v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [48, 256])
def test_rmsnorm(hidden, dtype):
    x = randn(2, 3, hidden, dtype=dtype)
    w = 1.0 + 0.1 * randn(hidden, dtype=dtype, seed=1)
    got = rmsnorm(x, w, 1e-5)
    assert got.shape == x.shape and got.dtype == dtype
    torch.testing.assert_close(got, rmsnorm_ref(x, w, 1e-5), **ELEM_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsnorm_fused_residual_add(dtype):
    x, r = randn(7, 96, dtype=dtype), randn(7, 96, dtype=dtype, seed=1)
    w = randn(96, dtype=dtype, seed=2)
    x_before, r_before = x.clone(), r.clone()
    out, summed = rmsnorm(x, w, 1e-6, residual=r)
    want_out, want_sum = rmsnorm_ref(x, w, 1e-6, residual=r)
    torch.testing.assert_close(summed, want_sum, **ELEM_TOL[dtype])
    torch.testing.assert_close(out, want_out, **ELEM_TOL[dtype])
    # The sum really is x + residual, and the inputs are left alone.
    torch.testing.assert_close(summed, (x.float() + r.float()).to(dtype), **ELEM_TOL[dtype])
    assert torch.equal(x, x_before) and torch.equal(r, r_before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_neox", [True, False], ids=["neox", "gptj"])
@pytest.mark.parametrize("rotary_dim", [32, 16], ids=["full", "partial"])
@pytest.mark.parametrize("scaling", [None, LLAMA3], ids=["plain", "llama3"])
def test_rotary_in_place_on_fused_qkv_views(scaling, rotary_dim, is_neox, dtype):
    heads, kv_heads, head_dim, n = 4, 2, 32, 6
    cache = rope_cos_sin_cache(head_dim, rotary_dim, 300, 10000.0, scaling, device=DEVICE)
    qkv = randn(n, (heads + 2 * kv_heads) * head_dim, dtype=dtype)
    q = qkv[:, : heads * head_dim].view(n, heads, head_dim)
    k = qkv[:, heads * head_dim : (heads + kv_heads) * head_dim].view(n, kv_heads, head_dim)
    v_before = qkv[:, (heads + kv_heads) * head_dim :].clone()
    positions = torch.tensor([0, 1, 63, 64, 200, 299], device=DEVICE)
    want_q, want_k = rotary_embedding_ref(positions, q, k, cache, is_neox)
    got_q, got_k = rotary_embedding(positions, q, k, cache, is_neox)
    assert got_q.data_ptr() == q.data_ptr()  # in place
    torch.testing.assert_close(q, want_q, **ELEM_TOL[dtype])
    torch.testing.assert_close(k, want_k, **ELEM_TOL[dtype])
    assert torch.equal(qkv[:, (heads + kv_heads) * head_dim :], v_before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_neox", [True, False], ids=["neox", "gptj"])
def test_rotary_and_store_kv_equals_rotary_then_store(is_neox, dtype):
    heads, kv_heads, head_dim, n, slots = 4, 2, 32, 5, 40
    cache = rope_cos_sin_cache(head_dim, head_dim, 300, 10000.0, LLAMA3, device=DEVICE)
    qkv = randn(n, (heads + 2 * kv_heads) * head_dim, dtype=dtype)
    q = qkv[:, : heads * head_dim].view(n, heads, head_dim)
    k = qkv[:, heads * head_dim : (heads + kv_heads) * head_dim].view(n, kv_heads, head_dim)
    v = qkv[:, (heads + kv_heads) * head_dim :].view(n, kv_heads, head_dim)
    positions = torch.tensor([0, 7, 64, 200, 299], device=DEVICE)
    loc = torch.tensor([3, 17, 0, 39, 8], device=DEVICE, dtype=torch.int32)
    k_buf = randn(slots, kv_heads, head_dim, dtype=dtype, seed=5)
    v_buf = randn(slots, kv_heads, head_dim, dtype=dtype, seed=6)
    want_q, want_k = rotary_embedding_ref(positions, q, k, cache, is_neox)
    want_kb, want_vb = k_buf.clone(), v_buf.clone()
    store_kv_ref(want_kb, want_vb, loc, want_k, v)
    rotary_embedding_and_store_kv(positions, q, k, v, cache, k_buf, v_buf, loc, is_neox)
    torch.testing.assert_close(q, want_q, **ELEM_TOL[dtype])
    torch.testing.assert_close(k, want_k, **ELEM_TOL[dtype])
    torch.testing.assert_close(k_buf, want_kb, **ELEM_TOL[dtype])
    assert torch.equal(v_buf, want_vb)  # copied exactly, untouched slots kept


def test_rotary_and_store_kv_needs_full_rotary_dim():
    cache = rope_cos_sin_cache(32, 16, 8, 10000.0, device=DEVICE)
    q, k = randn(1, 2, 32, dtype=torch.float32), randn(1, 1, 32, dtype=torch.float32)
    buf = randn(4, 1, 32, dtype=torch.float32)
    pos = torch.tensor([1], device=DEVICE)
    with pytest.raises(ValueError, match="rotary_dim"):
        rotary_embedding_and_store_kv(pos, q, k, k.clone(), cache, buf, buf.clone(), pos)


def test_rotary_styles_differ_and_position_zero_is_identity():
    cache = rope_cos_sin_cache(16, 16, 8, 10000.0, device=DEVICE)
    q, k = randn(2, 1, 16, dtype=torch.float32), randn(2, 1, 16, dtype=torch.float32, seed=1)
    pos = torch.tensor([0, 5], device=DEVICE)
    neox = rotary_embedding(pos, q.clone(), k.clone(), cache, True)[0]
    gptj = rotary_embedding(pos, q.clone(), k.clone(), cache, False)[0]
    torch.testing.assert_close(neox[0], q[0])
    assert not torch.allclose(neox[1], gptj[1])


def test_llama3_inv_freq_bands():
    """Per frequency, written out independently: high frequencies kept, low ones divided by
    `factor`, the band between interpolated by the wavelength's ratio to the old context."""
    dim, base = 64, 500000.0
    got = rope_inv_freq(dim, base, LLAMA3)
    old, low, high, factor = 64, 1.0, 4.0, 8.0
    bands = set()
    for i, f in enumerate(got.tolist()):
        f0 = base ** (-2 * i / dim)
        wavelen = 2 * math.pi / f0
        if wavelen < old / high:
            want, band = f0, "high"
        elif wavelen > old / low:
            want, band = f0 / factor, "low"
        else:
            s = (old / wavelen - low) / (high - low)
            want, band = (1 - s) * f0 / factor + s * f0, "mid"
        bands.add(band)
        assert f == pytest.approx(want, rel=1e-5)
    assert bands == {"high", "mid", "low"}
    torch.testing.assert_close(rope_inv_freq(dim, base, {"type": "linear", "factor": 2.0}),
                               rope_inv_freq(dim, base) / 2)
    with pytest.raises(NotImplementedError):
        rope_inv_freq(dim, base, {"rope_type": "nope"})


def test_cos_sin_cache_layout():
    cache = rope_cos_sin_cache(8, 8, 5, 100.0, dtype=torch.float16)
    inv = rope_inv_freq(8, 100.0)
    assert cache.shape == (5, 8) and cache.dtype == torch.float16
    torch.testing.assert_close(cache[3, :4].float(), torch.cos(3 * inv), atol=1e-3, rtol=0)
    torch.testing.assert_close(cache[3, 4:].float(), torch.sin(3 * inv), atol=1e-3, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_and_mul(dtype):
    x = randn(3, 5, 2 * 40, dtype=dtype)
    got = silu_and_mul(x)
    assert got.shape == (3, 5, 40)
    torch.testing.assert_close(got, silu_and_mul_ref(x), **ELEM_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_and_mul(approximate, dtype):
    x = 3 * randn(4, 2 * 1100, dtype=dtype)  # wider than one block; large |x| for both tails
    got = gelu_and_mul(x, approximate)
    torch.testing.assert_close(got, gelu_and_mul_ref(x, approximate), **ELEM_TOL[dtype])
    other = "tanh" if approximate == "none" else "none"
    assert not torch.equal(got, gelu_and_mul_ref(x, other))
