"""`flash_attention` (Triton, contiguous K/V per request) against a per-request fp32 reference:
ragged batches, cached prefixes, grouped KV heads, odd head sizes, strided inputs, and on CUDA
every launch variant (pointer loads, tensor descriptors, warp specialization)."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import ATTN_TOL, DEVICE, DTYPES, ON_GPU, randn

import sglang.kernels as K
from sglang.kernels.attention.flash import FlashLaunch


def reference(q, k, v, q_lens, k_lens, scale):
    """Each request's causal attention in fp32, the last query aligned with the last key."""
    outs, qs, ks = [], 0, 0
    group = q.shape[1] // k.shape[1]
    for ql, kl in zip(q_lens, k_lens):
        qq = q[qs:qs + ql].float().transpose(0, 1)  # [H, ql, D]
        kk = k[ks:ks + kl].float().repeat_interleave(group, 1).transpose(0, 1)
        vv = v[ks:ks + kl].float().repeat_interleave(group, 1).transpose(0, 1)
        scores = qq @ kk.transpose(1, 2) * scale
        pos = torch.arange(ql, device=q.device)[:, None] + (kl - ql)
        scores = scores.masked_fill(torch.arange(kl, device=q.device)[None, :] > pos, float("-inf"))
        outs.append((scores.softmax(-1) @ vv).transpose(0, 1))
        qs, ks = qs + ql, ks + kl
    return torch.cat(outs)


def make(q_lens, k_lens, heads, kv_heads, dim, dtype, seed=0):
    q = randn(sum(q_lens), heads, dim, dtype=dtype, seed=seed)
    k = randn(sum(k_lens), kv_heads, dim, dtype=dtype, seed=seed + 1)
    v = randn(sum(k_lens), kv_heads, dim, dtype=dtype, seed=seed + 2)
    cu_q = K.cumulative_lengths(torch.tensor(q_lens, device=DEVICE))
    cu_k = K.cumulative_lengths(torch.tensor(k_lens, device=DEVICE))
    return q, k, v, cu_q, cu_k


CASES = [
    pytest.param([5], [5], id="one-short-prefill"),
    pytest.param([33, 1, 17], [33, 1, 17], id="ragged-prefill"),
    pytest.param([7, 20, 1], [40, 20, 30], id="over-prefixes"),
]


# Two query heads per KV head in one program's rows (`pack`), or one.
PACKED = FlashLaunch(32, 16, 1, 1, pack=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q_lens,k_lens", CASES)
@pytest.mark.parametrize("launch", [None, PACKED], ids=["default", "packed"])
def test_matches_reference(dtype: torch.dtype, q_lens: list[int], k_lens: list[int],
                           launch: FlashLaunch | None) -> None:
    q, k, v, cu_q, cu_k = make(q_lens, k_lens, 4, 2, 64, dtype)
    got = K.flash_attention(q, k, v, cu_q, cu_k, max(q_lens), sm_scale=0.125, launch=launch)
    want = reference(q, k, v, q_lens, k_lens, 0.125)
    torch.testing.assert_close(got.float(), want, **ATTN_TOL[dtype])


@pytest.mark.parametrize("dim", [80, 32])
def test_head_dims_and_strided_inputs(dim: int) -> None:
    """A non-power-of-two head size, and q/k/v as column views of one fused projection."""
    q_lens, k_lens, heads, kv_heads = [19, 3], [19, 24], 6, 2
    fused = randn(sum(k_lens), (heads + 2 * kv_heads) * dim, dtype=torch.float32)
    q_all, k, v = fused.split([heads * dim, kv_heads * dim, kv_heads * dim], dim=1)
    # The queries are the last q_len tokens of each request.
    rows = torch.cat([torch.arange(19, device=DEVICE), 19 + torch.arange(21, 24, device=DEVICE)])
    q = q_all[rows].view(-1, heads, dim)
    k, v = k.view(-1, kv_heads, dim), v.view(-1, kv_heads, dim)
    assert k.stride(0) == fused.stride(0)
    cu_q = K.cumulative_lengths(torch.tensor(q_lens, device=DEVICE))
    cu_k = K.cumulative_lengths(torch.tensor(k_lens, device=DEVICE))
    got = K.flash_attention(q, k, v, cu_q, cu_k, 19, sm_scale=dim**-0.5)
    want = reference(q, k, v, q_lens, k_lens, dim**-0.5)
    torch.testing.assert_close(got, want, **ATTN_TOL[torch.float32])


def test_refuses_mismatched_inputs() -> None:
    q, k, v, cu_q, cu_k = make([4], [4], 4, 2, 32, torch.float32)
    with pytest.raises(ValueError, match="dtypes differ"):
        K.flash_attention(q, k.half(), v.half(), cu_q, cu_k, 4, sm_scale=0.1)
    with pytest.raises(ValueError, match="head_dim"):
        K.flash_attention(q, k[..., :16], v[..., :16], cu_q, cu_k, 4, sm_scale=0.1)
    with pytest.raises(ValueError, match="contiguous"):
        K.flash_attention(q, k, v, cu_q, cu_k, 4, sm_scale=0.1, out=torch.empty_like(q)[:, ::2])
    q6, k6, v6, cu_q, cu_k = make([4], [4], 6, 2, 32, torch.float32)
    with pytest.raises(ValueError, match="packs 3 heads"):
        K.flash_attention(q6, k6, v6, cu_q, cu_k, 4, sm_scale=0.1,
                          launch=FlashLaunch(16, 16, 1, 1, pack=3))


LAUNCHES = [FlashLaunch(128, 64, 8, 3), FlashLaunch(64, 128, 4, 2),
            FlashLaunch(128, 64, 8, 3, tma=True), FlashLaunch(128, 128, 8, 2, tma=True),
            FlashLaunch(64, 64, 4, 3, tma=True), FlashLaunch(128, 64, 8, 3, tma=True, pack=4),
            FlashLaunch(64, 64, 4, 3, tma=True, pack=2)]


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs CUDA")
@pytest.mark.parametrize("launch", LAUNCHES, ids=str)
def test_launch_variants_on_cuda(launch: FlashLaunch) -> None:
    q_lens, k_lens = [300, 1, 129, 64], [300, 200, 700, 64]
    q, k, v, cu_q, cu_k = make(q_lens, k_lens, 8, 2, 128, torch.bfloat16)
    got = K.flash_attention(q, k, v, cu_q, cu_k, 300, sm_scale=128**-0.5, launch=launch)
    want = reference(q, k, v, q_lens, k_lens, 128**-0.5)
    torch.testing.assert_close(got.float(), want, **ATTN_TOL[torch.bfloat16])


def test_tuner_candidates_are_distinct_valid_launches() -> None:
    from sglang.kernels.flash_attention_tune import candidates

    for group, packs in ((4, {1, 4}), (3, {1}), (8, {1, 4})):
        launches = candidates(group)
        assert len(set(launches)) == len(launches) > 10
        assert {la.pack for la in launches} == packs
        assert all(la.block_m % la.pack == 0 and la.block_m // la.pack >= 16 for la in launches)
