"""The torch attention backend's shared-prefix (cascade) decode equals plain paged decode."""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.attention import torch_backend
from sglang.runtime.attention.torch_backend import TorchAttentionBackend
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode


def _decode_batch(shared: int, suffixes: list[int], kv_heads: int, pool: KVPool) -> ForwardBatch:
    """Requests whose first `shared` positions map to the same slots, then slots of their own."""
    n = len(suffixes)
    seq = [shared + s for s in suffixes]
    table = torch.zeros(n, max(seq) + 1, dtype=torch.int64)
    prefix_slots = torch.arange(shared)
    nxt = shared
    for i, s in enumerate(suffixes):
        table[i, :shared] = prefix_slots
        table[i, shared : shared + s] = torch.arange(nxt, nxt + s)
        nxt += s
    return ForwardBatch(
        mode=ForwardMode.DECODE,
        input_ids=torch.zeros(n, dtype=torch.int64),
        positions=torch.tensor([x - 1 for x in seq]),
        out_cache_loc=torch.tensor([table[i, seq[i] - 1] for i in range(n)]),
        req_pool_indices=torch.arange(n),
        seq_lens=torch.tensor(seq),
        prefix_lens=torch.tensor([x - 1 for x in seq]),
        extend_lens=torch.ones(n, dtype=torch.int64),
        req_to_token=table,
        kv_pool=pool,
        seq_lens_cpu=seq,
        prefix_lens_cpu=[x - 1 for x in seq],
        extend_lens_cpu=[1] * n,
    )


@pytest.mark.parametrize("shared, suffixes, heads, kv_heads", [
    (100, [1, 5, 17, 3], 8, 2),
    (64, [2, 2], 4, 4),
    (130, [40, 1, 9], 6, 1),
])
def test_cascade_decode_matches_plain(shared, suffixes, heads, kv_heads, monkeypatch):
    torch.manual_seed(0)
    d = 16
    pool = KVPool(1024, 1, kv_heads, d, torch.float32, "cpu")
    pool.k[0][:1024] = torch.randn(1024, kv_heads, d)
    pool.v[0][:1024] = torch.randn(1024, kv_heads, d)
    n = len(suffixes)
    q = torch.randn(n, heads, d)
    k_new, v_new = torch.randn(n, kv_heads, d), torch.randn(n, kv_heads, d)
    backend = TorchAttentionBackend()

    batch = _decode_batch(shared, suffixes, kv_heads, pool)
    backend.prepare(batch)
    assert batch.attn_metadata.shared_slots is not None
    cascade = backend.forward(q, k_new, v_new, 0, d**-0.5, batch)

    monkeypatch.setattr(torch_backend, "MIN_SHARED_PREFIX", 10**9)
    batch = _decode_batch(shared, suffixes, kv_heads, pool)
    backend.prepare(batch)
    assert batch.attn_metadata.shared_slots is None
    plain = backend.forward(q, k_new, v_new, 0, d**-0.5, batch)
    torch.testing.assert_close(cascade, plain, atol=1e-5, rtol=1e-5)


def test_short_shared_prefix_falls_back_to_plain_decode():
    """A shared prefix below the threshold (here 30 of 64) must not shift the key window."""
    torch.manual_seed(1)
    d, kv_heads, heads = 16, 2, 4
    pool = KVPool(512, 1, kv_heads, d, torch.float32, "cpu")
    pool.k[0][:512] = torch.randn(512, kv_heads, d)
    pool.v[0][:512] = torch.randn(512, kv_heads, d)
    suffixes = [40, 8]
    batch = _decode_batch(30, suffixes, kv_heads, pool)
    backend = TorchAttentionBackend()
    backend.prepare(batch)
    assert batch.attn_metadata.shared_slots is None
    q = torch.randn(2, heads, d)
    k_new, v_new = torch.randn(2, kv_heads, d), torch.randn(2, kv_heads, d)
    out = backend.forward(q, k_new, v_new, 0, d**-0.5, batch)
    # Reference: softmax attention of each query over its request's keys.
    for i, n in enumerate(30 + s for s in suffixes):
        slots = batch.req_to_token[i, :n]
        k = pool.k[0][slots].repeat_interleave(heads // kv_heads, 1)
        v = pool.v[0][slots].repeat_interleave(heads // kv_heads, 1)
        w = torch.softmax(torch.einsum("hd,nhd->hn", q[i], k) * d**-0.5, -1)
        torch.testing.assert_close(out[i], torch.einsum("hn,nhd->hd", w, v), atol=1e-5, rtol=1e-5)
