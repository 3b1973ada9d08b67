"""Extend attention through torch's FlashAttention-2 varlen kernel: the per-batch slot gather on
any device, the kernel itself against our Triton extend kernel on CUDA."""

from __future__ import annotations

import pytest
import torch

import sglang.kernels as K


def test_cumulative_lengths() -> None:
    got = K.cumulative_lengths(torch.tensor([3, 0, 5]))
    assert got.dtype == torch.int32 and got.tolist() == [0, 3, 3, 8]


def test_gather_kv_slots_reads_each_request_row_in_order() -> None:
    g = torch.Generator().manual_seed(0)
    table = torch.randperm(4 * 16, generator=g).view(4, 16).to(torch.int32)
    rows = torch.tensor([2, 0, 3])
    seq = torch.tensor([5, 1, 9])
    got = K.gather_kv_slots(table, rows, seq, K.cumulative_lengths(seq), int(seq.sum()))
    want = torch.cat([table[r, :n] for r, n in zip(rows.tolist(), seq.tolist())]).long()
    assert torch.equal(got, want)


def test_refuses_what_flash_cannot_run() -> None:
    q = torch.zeros(4, 2, 64)
    cu = torch.tensor([0, 4], dtype=torch.int32)
    assert not K.flash_varlen_supported(q)
    with pytest.raises(ValueError, match="fp16/bf16"):
        K.varlen_extend_attention(q, q, q, cu, cu, 4, 4, sm_scale=0.125)


@pytest.mark.gpu
@pytest.mark.parametrize("prefix", [0, 37])
def test_matches_the_triton_extend_kernel(prefix: int) -> None:
    torch.manual_seed(0)
    dev, dt, heads, kv_heads, dim = "cuda", torch.bfloat16, 8, 2, 128
    ext = torch.tensor([70, 1, 129], device=dev)
    pre = torch.tensor([prefix, prefix // 2, 0], device=dev)
    seq = pre + ext
    slots = int(seq.sum())
    k_pool = torch.randn(slots + 5, kv_heads, dim, device=dev, dtype=dt)
    v_pool = torch.randn_like(k_pool)
    # Every request's keys in shuffled pool slots.
    perm = torch.randperm(slots, device=dev).to(torch.int32)
    table = torch.zeros(3, 300, dtype=torch.int32, device=dev)
    cu_k = K.cumulative_lengths(seq)
    for r in range(3):
        table[r, : int(seq[r])] = perm[int(cu_k[r]) : int(cu_k[r + 1])]
    rows = torch.arange(3, device=dev)
    q = torch.randn(int(ext.sum()), heads, dim, device=dev, dtype=dt)
    want = K.extend_attention(q, k_pool, v_pool, table, rows, pre, ext,
                              torch.cumsum(ext, 0) - ext, sm_scale=dim**-0.5,
                              max_extend_len=int(ext.max()))
    kv_slots = K.gather_kv_slots(table, rows, seq, cu_k, slots)
    got = K.varlen_extend_attention(
        q, k_pool[kv_slots], v_pool[kv_slots], K.cumulative_lengths(ext), cu_k,
        int(ext.max()), int(seq.max()), sm_scale=dim**-0.5)
    torch.testing.assert_close(got.float(), want.float(), atol=2e-2, rtol=2e-2)
