"""Extend and decode attention kernels against the torch references.

The KV pool is filled with NaN except the slots the requests own, which are scattered at random:
a kernel that reads one key outside a request's ``req_to_token`` row returns NaN.
"""

from __future__ import annotations

import pytest
import torch
from kernel_cases import ATTN_TOL, DEVICE, DTYPES, ON_GPU, randn

from sglang.kernels import DecodeWorkspace, decode_attention, extend_attention
from sglang.kernels.reference import decode_attention_ref, extend_attention_ref

HEAD_DIM = 32
# (q heads, kv heads): GQA ratios 1, 4 and 8.
GQA = [pytest.param((2, 2), id="mha"), pytest.param((4, 1), id="gqa4"),
       pytest.param((8, 1), id="gqa8")]


class Pool:
    """A NaN-filled KV pool and a req_to_token table whose rows own scattered slots."""

    def __init__(self, lens: list[int], kv_heads: int, dtype: torch.dtype, index_dtype=torch.int64,
                 seed: int = 0) -> None:
        num_slots = sum(lens) + 7
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(num_slots, generator=g)
        max_len = max(lens) + 3
        # Rows in a shuffled order, and unused entries pointing at a poisoned slot.
        self.rows = torch.randperm(len(lens) + 2, generator=g)[: len(lens)]
        table = torch.full((len(lens) + 2, max_len), int(perm[-1]), dtype=torch.int64)
        start = 0
        for row, n in zip(self.rows.tolist(), lens):
            table[row, :n] = perm[start : start + n]
            start += n
        self.k = torch.full((num_slots, kv_heads, HEAD_DIM), float("nan"), dtype=dtype)
        self.v = torch.full_like(self.k, float("nan"))
        used = perm[:start]
        self.k[used] = torch.randn(start, kv_heads, HEAD_DIM, generator=g).to(dtype)
        self.v[used] = torch.randn(start, kv_heads, HEAD_DIM, generator=g).to(dtype)
        self.k, self.v = self.k.to(DEVICE), self.v.to(DEVICE)
        self.table = table.to(index_dtype).to(DEVICE)
        self.rows = self.rows.to(DEVICE)


def _lens(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64, device=DEVICE)


# (prefix lens, extend lens): ragged, prefixes from 0 up, block edges of the interpreter's 16.
EXTEND_CASES = [
    pytest.param(([0, 5, 16, 3], [7, 20, 1, 17]), id="ragged"),
    pytest.param(([0], [33]), id="prefill"),
    pytest.param(([300, 0, 77], [200, 129, 1]), id="long", marks=pytest.mark.gpu),
]


def _run_extend(prefix, extend, heads, kv_heads, dtype, index_dtype=torch.int64, **kw):
    pool = Pool([p + e for p, e in zip(prefix, extend)], kv_heads, dtype, index_dtype)
    q = randn(sum(extend), heads, HEAD_DIM, dtype=dtype, seed=1)
    ext = _lens(extend)
    args = (q, pool.k, pool.v, pool.table, pool.rows, _lens(prefix), ext)
    got = extend_attention(*args, torch.cumsum(ext, 0) - ext, sm_scale=HEAD_DIM**-0.5,
                           max_extend_len=max(extend), **kw)
    want = extend_attention_ref(*args, sm_scale=HEAD_DIM**-0.5, **kw)
    return got, want


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gqa", GQA)
@pytest.mark.parametrize("case", EXTEND_CASES)
def test_extend_matches_reference(case, gqa, dtype):
    got, want = _run_extend(*case, *gqa, dtype)
    assert got.dtype == dtype and not got.isnan().any()
    torch.testing.assert_close(got, want, **ATTN_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [
    pytest.param(dict(sliding_window=6), id="window"),
    pytest.param(dict(logit_cap=2.0), id="softcap"),
    pytest.param(dict(sliding_window=20, logit_cap=3.0), id="window+softcap"),
])
def test_extend_window_and_softcap(kw, dtype):
    # int32 table and prefixes longer than the window: the window must cut into the prefix.
    got, want = _run_extend([9, 0, 30], [12, 18, 3], 4, 2, dtype, torch.int32, **kw)
    torch.testing.assert_close(got, want, **ATTN_TOL[dtype])
    plain, _ = _run_extend([9, 0, 30], [12, 18, 3], 4, 2, dtype, torch.int32)
    assert not torch.allclose(got.float(), plain.float(), atol=1e-2)  # the option took effect


def test_extend_writes_into_given_out_with_strided_q():
    dtype = torch.float32
    pool = Pool([10, 4], 2, dtype)
    qkv = randn(14, 4 * HEAD_DIM + 2 * 2 * HEAD_DIM, dtype=dtype)
    q = qkv[:, : 4 * HEAD_DIM].view(14, 4, HEAD_DIM)  # a view of a fused QKV output
    prefix, ext = _lens([0, 0]), _lens([10, 4])
    out = torch.empty(14, 4, HEAD_DIM, device=DEVICE)
    got = extend_attention(q, pool.k, pool.v, pool.table, pool.rows, prefix, ext, _lens([0, 10]),
                           out, sm_scale=0.3, max_extend_len=10)
    assert got is out
    want = extend_attention_ref(q, pool.k, pool.v, pool.table, pool.rows, prefix, ext,
                                sm_scale=0.3)
    torch.testing.assert_close(out, want, **ATTN_TOL[dtype])


# Sequence lengths: 1 (only the new token), block and split edges, a longer one.
DECODE_LENS = [
    pytest.param([1, 16, 47, 5], id="ragged"),
    pytest.param([700, 1, 2049, 64], id="long", marks=pytest.mark.gpu),
]


def _run_decode(lens, heads, kv_heads, dtype, index_dtype=torch.int64, **kw):
    pool = Pool(lens, kv_heads, dtype, index_dtype, seed=2)
    q = randn(len(lens), heads, HEAD_DIM, dtype=dtype, seed=3)
    args = (q, pool.k, pool.v, pool.table, pool.rows, _lens(lens))
    ref_kw = {k: v for k, v in kw.items() if k in ("sliding_window", "logit_cap")}
    got = decode_attention(*args, sm_scale=HEAD_DIM**-0.5, **kw)
    return got, decode_attention_ref(*args, sm_scale=HEAD_DIM**-0.5, **ref_kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gqa", GQA)
@pytest.mark.parametrize("lens", DECODE_LENS)
def test_decode_matches_reference(lens, gqa, dtype):
    got, want = _run_decode(lens, *gqa, dtype, num_kv_splits=4)
    assert got.dtype == dtype and not got.isnan().any()
    torch.testing.assert_close(got, want, **ATTN_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [
    pytest.param(dict(sliding_window=7), id="window"),
    pytest.param(dict(logit_cap=2.0), id="softcap"),
    pytest.param(dict(num_kv_splits=1), id="one-split"),
    pytest.param(dict(num_kv_splits=3, reduce_in_fp32=False), id="reduce-in-dtype"),
])
def test_decode_options(kw, dtype):
    got, want = _run_decode([3, 40, 21], 4, 2, dtype, torch.int32, **kw)
    torch.testing.assert_close(got, want, **ATTN_TOL[dtype])


def test_decode_preallocated_workspace_and_padding():
    """A workspace sized for a larger batch x splits is reused; a padded entry with seq_len 0
    gives zeros rather than NaN."""
    dtype = torch.float16
    pool = Pool([30, 9], 1, dtype)
    q = randn(3, 4, HEAD_DIM, dtype=dtype)
    rows = torch.cat([pool.rows, pool.rows[:1]])
    seq = _lens([30, 9, 0])
    ws = DecodeWorkspace.allocate(8, 4, HEAD_DIM, 6, DEVICE)
    out = torch.empty_like(q)
    got = decode_attention(q, pool.k, pool.v, pool.table, rows, seq, out, sm_scale=0.2,
                           num_kv_splits=4, workspace=ws)
    assert got is out
    want = decode_attention_ref(q, pool.k, pool.v, pool.table, rows, seq, sm_scale=0.2)
    torch.testing.assert_close(got, want, **ATTN_TOL[dtype])
    assert torch.equal(got[2], torch.zeros_like(got[2]))
    assert ws.capacity == 48
    with pytest.raises(ValueError, match="no room"):
        decode_attention(q, pool.k, pool.v, pool.table, rows, seq, sm_scale=0.2,
                         num_kv_splits=17, workspace=ws)


def test_decode_merge_counters_reset_and_repeat_exactly():
    """The last program of each (request, KV head) merges the splits and zeroes its counter:
    repeated calls on one workspace give identical results (a missed or early merge would
    show as a wrong or varying output; on a GPU this runs many times)."""
    dtype = torch.float16
    lens = [300, 1, 77, 150, 0, 9]
    pool = Pool(lens, 2, dtype)
    q = randn(len(lens), 8, HEAD_DIM, dtype=dtype)
    seq = _lens(lens)
    splits = 64 if ON_GPU else 8
    ws = DecodeWorkspace.allocate(len(lens), 8, HEAD_DIM, splits, DEVICE)
    want = decode_attention_ref(q, pool.k, pool.v, pool.table, pool.rows, seq, sm_scale=0.3)
    first = None
    for _ in range(50 if ON_GPU else 2):
        got = decode_attention(q, pool.k, pool.v, pool.table, pool.rows, seq, sm_scale=0.3,
                               num_kv_splits=splits, workspace=ws)
        assert int(ws.arrivals.abs().sum()) == 0
        torch.testing.assert_close(got, want, **ATTN_TOL[dtype])
        first = got if first is None else first
        assert torch.equal(got, first)


@pytest.mark.parametrize("one_split_keys,one_split_block_n,one_split_stages",
                         [(20, 0, 0), (64, 0, 0), (64, 32, 0), (64, 32, 1)])
def test_decode_short_requests_take_one_program(one_split_keys, one_split_block_n,
                                                one_split_stages):
    """A request with at most `one_split_keys` keys is done by one program that writes its
    output directly (no merge), in blocks and stages of its own when given, a longer one by its
    splits and the merge, in one batch (with a window too, where the count is of the keys in
    the window); the counters end at zero."""
    from sglang.kernels.attention.decode_launch import DecodeLaunch

    dtype = torch.float32
    lens = [20, 64, 65, 200, 0, 1]
    launch = DecodeLaunch(16, 1, 1, one_split_keys=one_split_keys,
                          one_split_block_n=one_split_block_n, one_split_stages=one_split_stages)
    for kw in ({}, {"sliding_window": 40}):
        ws = DecodeWorkspace.allocate(len(lens), 4, HEAD_DIM, 8, DEVICE)
        got, want = _run_decode(lens, 4, 2, dtype, num_kv_splits=8, launch=launch,
                                workspace=ws, **kw)
        torch.testing.assert_close(got, want, **ATTN_TOL[dtype])
        assert int(ws.arrivals.abs().sum()) == 0


@pytest.mark.gpu
def test_decode_is_graph_capturable_without_host_syncs():
    """Captured once, replayed after the sequence lengths change on the device: same result as
    the reference; and the eager call makes no host synchronisation."""
    dtype = torch.bfloat16
    lens = [100, 7, 513, 64]
    pool = Pool([n + 50 for n in lens], 2, dtype)
    q = randn(4, 8, HEAD_DIM, dtype=dtype)
    seq = _lens(lens)
    ws = DecodeWorkspace.allocate(4, 8, HEAD_DIM, 16, DEVICE)
    out = torch.empty_like(q)

    def call():
        decode_attention(q, pool.k, pool.v, pool.table, pool.rows, seq, out, sm_scale=0.2,
                         num_kv_splits=16, workspace=ws)

    torch.cuda.set_sync_debug_mode("error")
    try:
        call()  # compiles (and warms up) outside the graph
    finally:
        torch.cuda.set_sync_debug_mode("default")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    seq.add_(torch.tensor([1, 50, 3, 0], device=DEVICE))
    graph.replay()
    torch.cuda.synchronize()
    want = decode_attention_ref(q, pool.k, pool.v, pool.table, pool.rows, seq, sm_scale=0.2)
    torch.testing.assert_close(out, want, **ATTN_TOL[dtype])


@pytest.mark.skipif(ON_GPU, reason="checks the error path for CPU tensors")
def test_decode_rejects_cpu_tensors_outside_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    pool = Pool([4], 1, torch.float32)
    q = randn(1, 2, HEAD_DIM, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        decode_attention(q, pool.k, pool.v, pool.table, pool.rows, _lens([4]), sm_scale=0.2)


def test_decode_launch_comes_from_the_measured_table(override):
    """A measured launch (here a "cpu" table, as the interpreter reads) is taken for the nearest
    batch size, an explicit `launch` wins, and every launch gives the reference's output."""
    import json

    from sglang.kernels import tuning
    from sglang.kernels.attention.decode_launch import (
        TUNING_KERNEL,
        DecodeLaunch,
        decode_launch,
        tuning_key,
    )

    heads, kv_heads = 4, 1
    key = tuning_key(heads, kv_heads, HEAD_DIM, torch.float32)
    table = {key: {"2": {"launch": {"block_n": 32, "num_warps": 2, "num_stages": 1}},
                   "64": {"launch": {"block_n": 64, "num_warps": 8, "num_stages": 3}}}}
    (override / tuning.table_name(TUNING_KERNEL, "cpu")).write_text(json.dumps(table))
    cpu = torch.device("cpu")
    assert decode_launch(4, heads, kv_heads, HEAD_DIM, torch.float32, cpu) == DecodeLaunch(32, 2, 1)
    assert decode_launch(40, heads, kv_heads, HEAD_DIM, torch.float32, cpu) == DecodeLaunch(64, 8, 3)
    if DEVICE == "cpu":
        got, want = _run_decode([1, 16, 47, 5], heads, kv_heads, torch.float32, num_kv_splits=2)
        torch.testing.assert_close(got, want, **ATTN_TOL[torch.float32])
        got, want = _run_decode([1, 16, 47, 5], heads, kv_heads, torch.float32, num_kv_splits=2,
                                launch=DecodeLaunch(16, 1, 1))
        torch.testing.assert_close(got, want, **ATTN_TOL[torch.float32])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rope_kw", [
    pytest.param(dict(is_neox=True, rotary_dim=HEAD_DIM), id="neox"),
    pytest.param(dict(is_neox=False, rotary_dim=HEAD_DIM), id="gptj"),
    pytest.param(dict(is_neox=True, rotary_dim=HEAD_DIM // 2), id="partial"),
])
@pytest.mark.parametrize("one_split_keys", [0, 64], ids=["split", "one-program"])
def test_decode_rotates_and_stores_the_current_token(one_split_keys, rope_kw, dtype):
    """With `rope`, the kernel rotates q and the current key and writes the key and value into
    the pool itself: the same pool and output as the rotary + store kernel followed by decode
    attention, from a pool whose current slots hold NaN (so the key is read back only after
    the store). q is left unrotated; a padded entry (no keys) still stores, as the store kernel
    does."""
    from sglang.kernels import DecodeRope, rope_cos_sin_cache, rotary_embedding, store_kv
    from sglang.kernels.attention.decode_launch import DecodeLaunch

    lens = [1, 16, 47, 5, 0, 70]
    heads, kv_heads = 4, 2
    pool = Pool(lens, kv_heads, dtype, seed=4)
    seq = _lens(lens)
    loc = pool.table[pool.rows, (seq - 1).clamp(min=0)]
    pool.k[loc], pool.v[loc] = float("nan"), float("nan")
    positions = (seq - 1).clamp(min=0) * 3  # any positions: the table is read at these
    cache = rope_cos_sin_cache(HEAD_DIM, rope_kw["rotary_dim"], 256, 10000.0, device=DEVICE)
    qkv = randn(len(lens), (heads + 2 * kv_heads) * HEAD_DIM, dtype=dtype, seed=9)
    q, k, v = qkv.split([heads * HEAD_DIM, kv_heads * HEAD_DIM, kv_heads * HEAD_DIM], dim=1)
    q, k, v = (t.view(len(lens), -1, HEAD_DIM) for t in (q, k, v))
    launch = DecodeLaunch(16, 1, 1, one_split_keys=one_split_keys, one_split_block_n=32)
    kw = dict(sm_scale=0.3, num_kv_splits=4, launch=launch)

    want_k, want_v = pool.k.clone(), pool.v.clone()
    want_q, rotated_k = rotary_embedding(positions, q.clone(), k.clone(), cache,
                                         is_neox=rope_kw["is_neox"])
    store_kv(want_k, want_v, loc, rotated_k, v)
    want = decode_attention(want_q, want_k, want_v, pool.table, pool.rows, seq, **kw)

    q_before = q.clone()
    rope = DecodeRope(positions, cache, k, v, loc, is_neox=rope_kw["is_neox"])
    got = decode_attention(q, pool.k, pool.v, pool.table, pool.rows, seq, rope=rope, **kw)
    assert torch.equal(q, q_before)
    torch.testing.assert_close(pool.k, want_k, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(pool.v, want_v, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got, want, **ATTN_TOL[dtype])
    assert not got.isnan().any()


def test_decode_rope_rejects_what_it_cannot_store():
    from sglang.kernels import DecodeRope, rope_cos_sin_cache

    pool = Pool([4, 2], 1, torch.float32)
    q = randn(2, 2, HEAD_DIM, dtype=torch.float32)
    k = randn(2, 1, HEAD_DIM, dtype=torch.float32)
    pos = _lens([3, 1])
    args = (q, pool.k, pool.v, pool.table, pool.rows, _lens([4, 2]))
    wide = rope_cos_sin_cache(2 * HEAD_DIM, 2 * HEAD_DIM, 8, 10000.0, device=DEVICE)
    with pytest.raises(ValueError, match="rotary_dim"):
        decode_attention(*args, sm_scale=0.2, rope=DecodeRope(pos, wide, k, k, pos))
    cache = rope_cos_sin_cache(HEAD_DIM, HEAD_DIM, 8, 10000.0, device=DEVICE)
    with pytest.raises(ValueError, match="one entry per request"):
        decode_attention(*args, sm_scale=0.2, rope=DecodeRope(pos[:1], cache, k, k, pos))
    fp8 = pool.k.to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="fp8"):
        decode_attention(q, fp8, fp8, *args[3:], sm_scale=0.2,
                         rope=DecodeRope(pos, cache, k, k, pos))
