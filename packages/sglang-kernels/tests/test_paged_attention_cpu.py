"""The CPU paged-attention and rotary + KV-write kernels against torch references."""

from __future__ import annotations

import pytest
import torch

from sglang.kernels import paged_attention_cpu, rope_store_kv_cpu
from sglang.kernels.cpu import loader


@pytest.fixture(autouse=True)
def _kernel_cache(tmp_path_factory, monkeypatch):
    """One build per test session in a private cache (not the user's)."""
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "kernel_cache"))


def reference(q, k_buf, v_buf, table, rows, kv_lens, scale, window=None, cap=0.0):
    """Each query token over its row's keys [start, kv_len), in float64."""
    tokens, heads, _ = q.shape
    group = heads // k_buf.shape[1]
    out = torch.empty(q.shape, dtype=torch.float64)
    for t in range(tokens):
        end = int(kv_lens[t])
        start = max(0, end - window) if window else 0
        slots = table[rows[t], start:end]
        k = k_buf[slots].double().repeat_interleave(group, 1)
        v = v_buf[slots].double().repeat_interleave(group, 1)
        s = torch.einsum("hd,nhd->hn", q[t].double(), k) * scale
        if cap:
            s = torch.tanh(s / cap) * cap
        out[t] = torch.einsum("hn,nhd->hd", torch.softmax(s, -1), v)
    return out


def make_case(heads, kv_heads, head_dim, lens, seed=0, slots=3000):
    g = torch.Generator().manual_seed(seed)
    k_buf = torch.randn(slots + 1, kv_heads, head_dim, generator=g)
    v_buf = torch.randn(slots + 1, kv_heads, head_dim, generator=g)
    rows_in_table = 5
    # Slots in scattered order, so a row's keys are not one contiguous run of the pool.
    table = torch.stack([torch.randperm(slots, generator=g)[:max(lens) + 3]
                         for _ in range(rows_in_table)])
    rows = torch.randint(0, rows_in_table, (len(lens),), generator=g)
    q = torch.randn(len(lens), heads, head_dim, generator=g) * 2
    return q, k_buf, v_buf, table, rows, torch.tensor(lens)


# Lengths around the 32-key block and 16-key vectors: 1, partial blocks, exact multiples.
LENS = [1, 2, 15, 16, 17, 31, 32, 33, 64, 100, 517]


@pytest.mark.parametrize("heads, kv_heads, head_dim", [
    (9, 3, 64), (8, 2, 128), (4, 4, 16), (12, 1, 48), (32, 2, 64), (6, 3, 256),
])
def test_matches_reference(heads, kv_heads, head_dim):
    q, k_buf, v_buf, table, rows, lens = make_case(heads, kv_heads, head_dim, LENS)
    scale = head_dim**-0.5
    got = paged_attention_cpu(q, k_buf, v_buf, table, rows, lens, scale)
    assert got is not None and got.shape == q.shape and got.dtype == torch.float32
    want = reference(q, k_buf, v_buf, table, rows, lens, scale)
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("window, cap", [(1, 0.0), (20, 0.0), (40, 0.0), (None, 5.0), (33, 8.0)])
def test_sliding_window_and_soft_cap(window, cap):
    q, k_buf, v_buf, table, rows, lens = make_case(8, 2, 64, LENS, seed=1)
    got = paged_attention_cpu(q, k_buf, v_buf, table, rows, lens, 0.125, window=window,
                              logit_cap=cap)
    want = reference(q, k_buf, v_buf, table, rows, lens, 0.125, window, cap)
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)


def test_large_scores_do_not_overflow():
    # Scores in the hundreds: the online softmax must subtract the running max.
    q, k_buf, v_buf, table, rows, lens = make_case(4, 2, 64, [5, 70, 300], seed=2)
    got = paged_attention_cpu(q * 40, k_buf, v_buf, table, rows, lens, 1.0)
    want = reference(q * 40, k_buf, v_buf, table, rows, lens, 1.0)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)


def test_query_views_of_a_fused_projection():
    # q as the runtime passes it: a [T, H, D] view into a wider [T, (H + 2 KVH) D] row.
    heads, kv_heads, d = 6, 2, 32
    q, k_buf, v_buf, table, rows, lens = make_case(heads, kv_heads, d, [3, 40, 90], seed=3)
    fused = torch.randn(3, (heads + 2 * kv_heads) * d)
    fused[:, : heads * d] = q.reshape(3, -1)
    view = fused[:, : heads * d].view(3, heads, d)
    assert not view.is_contiguous()
    got = paged_attention_cpu(view, k_buf, v_buf, table, rows, lens, d**-0.5)
    torch.testing.assert_close(got, paged_attention_cpu(q, k_buf, v_buf, table, rows, lens,
                                                        d**-0.5))


@pytest.mark.parametrize("what", ["head_dim", "dtype", "group", "pool layout"])
def test_declines_what_it_does_not_take(what):
    q, k_buf, v_buf, table, rows, lens = make_case(8, 2, 64, [4, 9])
    if what == "head_dim":
        q, k_buf, v_buf = q[..., :40], k_buf[..., :40].contiguous(), v_buf[..., :40].contiguous()
        q = q.contiguous()
    elif what == "dtype":
        q, k_buf, v_buf = q.bfloat16(), k_buf.bfloat16(), v_buf.bfloat16()
    elif what == "group":
        q = torch.randn(4 * 2 * 17, 1, 64).view(2, 68, 64)  # 34 query heads per KV head
    else:
        k_buf = k_buf.transpose(0, 1).contiguous().transpose(0, 1)
    assert paged_attention_cpu(q, k_buf, v_buf, table, rows, lens, 0.125) is None


def torch_rotary(x, positions, cos, sin, neox):
    """The runtime's torch rotary (layers/rotary.py) on the first rot_dim features."""
    rot_dim = 2 * cos.shape[-1]
    c, s = cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)
    rot, rest = x[..., :rot_dim], x[..., rot_dim:]
    if neox:
        x1, x2 = rot.chunk(2, dim=-1)
        out = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)
    else:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).flatten(-2)
    return torch.cat((out, rest), dim=-1)


@pytest.mark.parametrize("neox", [True, False])
@pytest.mark.parametrize("head_dim, rot_dim", [(64, 64), (64, 32), (80, 80)])
def test_rope_store_kv_is_the_torch_rotary_bit_for_bit(neox, head_dim, rot_dim):
    g = torch.Generator().manual_seed(4)
    tokens, heads, kv_heads, slots = 7, 6, 2, 50
    fused = torch.randn(tokens, (heads + 2 * kv_heads) * head_dim, generator=g)
    q, k, v = fused.split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], -1)
    q = q.view(tokens, heads, head_dim)
    k, v = k.view(tokens, kv_heads, head_dim), v.view(tokens, kv_heads, head_dim)
    angles = torch.rand(300, rot_dim // 2, generator=g) * 6
    cos, sin = angles.cos(), angles.sin()
    positions = torch.randint(0, 300, (tokens,), generator=g)
    loc = torch.randperm(slots, generator=g)[:tokens]
    want_q = torch_rotary(q, positions, cos, sin, neox)
    want_k = torch_rotary(k, positions, cos, sin, neox)
    k_buf = torch.zeros(slots + 1, kv_heads, head_dim)
    v_buf = torch.zeros(slots + 1, kv_heads, head_dim)
    v_before = v.clone()
    assert rope_store_kv_cpu(q, k, v, positions, cos, sin, k_buf, v_buf, loc, is_neox=neox)
    assert torch.equal(q, want_q)
    assert torch.equal(k_buf[loc], want_k)
    assert torch.equal(v_buf[loc], v_before)
    untouched = torch.ones(slots + 1, dtype=torch.bool)
    untouched[loc] = False
    assert not k_buf[untouched].any() and not v_buf[untouched].any()


def test_rope_store_kv_declines_other_dtypes():
    q = torch.randn(2, 4, 64, dtype=torch.bfloat16)
    k = v = torch.randn(2, 2, 64, dtype=torch.bfloat16)
    cos = sin = torch.ones(10, 32)
    buf = torch.zeros(5, 2, 64, dtype=torch.bfloat16)
    assert not rope_store_kv_cpu(q, k, v, torch.tensor([0, 1]), cos, sin, buf, buf,
                                 torch.tensor([0, 1]))


# Shared prefixes: the kernel computes keys that consecutive tokens' rows hold in the same pool
# slots once for the whole group (a tile of up to 16 // group tokens), then each token's own.


def chain_table(prefixes, lens, slots, g):
    """Row i holds the first prefixes[i] slots of row i - 1 (the same pool slots, as the radix
    cache hands out), then slots no other row holds, up to lens[i] + 2 entries."""
    width = max(lens) + 2
    fresh = iter(torch.randperm(slots, generator=g).tolist())
    table = torch.empty(len(lens), width, dtype=torch.int64)
    for i in range(len(lens)):
        keep = prefixes[i] if i else 0
        table[i, :keep] = table[i - 1, :keep]
        table[i, keep:] = torch.tensor([next(fresh) for _ in range(width - keep)])
    return table


def make_shared_case(heads, kv_heads, head_dim, prefixes, lens, seed=5, scale_q=2.0):
    g = torch.Generator().manual_seed(seed)
    slots = len(lens) * (max(lens) + 2) + 1
    k_buf = torch.randn(slots, kv_heads, head_dim, generator=g)
    v_buf = torch.randn(slots, kv_heads, head_dim, generator=g)
    table = chain_table(prefixes, lens, slots, g)
    q = torch.randn(len(lens), heads, head_dim, generator=g) * scale_q
    return q, k_buf, v_buf, table, torch.arange(len(lens)), torch.tensor(lens)


# prefixes[i]: slots row i shares with row i - 1; lens[i]: the keys decode token i sees.
SHARING = {
    # Every row on one 300-key prefix, then 1-80 keys of its own.
    "full": ([300] * 20, [300 + (7 * i) % 80 + 1 for i in range(20)]),
    # Within a tile the common prefix shrinks from token to token (and past a block boundary,
    # and below the planner's minimum), and some neighbours share nothing.
    "partial": ([0, 300, 257, 120, 250, 64, 65, 300, 30, 200, 200, 199, 0, 400, 33, 400, 97,
                 96, 0, 130],
                [330, 340, 300, 290, 310, 260, 280, 330, 220, 240, 250, 230, 420, 450, 410,
                 430, 200, 180, 150, 160]),
    # One 300-key prefix, but some tokens see fewer keys than it (their kv_len ends inside it).
    "short kv_len": ([300] * 16, [350, 360, 90, 340, 64, 63, 1, 330, 300, 299, 301, 33, 320,
                                  310, 128, 129]),
}


@pytest.mark.parametrize("sharing", list(SHARING))
@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (9, 3), (16, 2)])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_shared_prefix_matches_reference(sharing, heads, kv_heads, head_dim):
    prefixes, lens = SHARING[sharing]
    q, k_buf, v_buf, table, rows, lens = make_shared_case(heads, kv_heads, head_dim, prefixes,
                                                          lens)
    scale = head_dim**-0.5
    got = paged_attention_cpu(q, k_buf, v_buf, table, rows, lens, scale)
    want = reference(q, k_buf, v_buf, table, rows, lens, scale)
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("heads, kv_heads, head_dim", [(9, 3, 64), (8, 1, 48), (4, 2, 256),
                                                      (32, 2, 64)])
@pytest.mark.parametrize("window, cap", [(None, 5.0), (100, 0.0), (250, 0.0), (400, 8.0),
                                         (64, 30.0)])
def test_shared_prefix_window_and_soft_cap(heads, kv_heads, head_dim, window, cap):
    # A window that starts inside the shared prefix for some tokens and past it for others.
    # head_dims 48 and 256 take the generic path; 16 query heads per KV head allow no tiles.
    prefixes, lens = SHARING["partial"]
    q, k_buf, v_buf, table, rows, lens = make_shared_case(heads, kv_heads, head_dim, prefixes,
                                                          lens, seed=6)
    got = paged_attention_cpu(q, k_buf, v_buf, table, rows, lens, 0.125, window=window,
                              logit_cap=cap)
    want = reference(q, k_buf, v_buf, table, rows, lens, 0.125, window, cap)
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)


EXTENDS = {  # cached tokens, new tokens, slots shared with the previous request
    "mixed": ([260, 300, 300, 5, 140, 300], [14, 3, 9, 40, 1, 17], [0, 250, 300, 5, 100, 140]),
    # More tokens than the plan the kernel keeps on its stack (256).
    "long": ([200, 200, 90, 200, 200, 200], [60, 55, 50, 45, 40, 64], [0, 200, 90, 80, 200, 0]),
}


@pytest.mark.parametrize("window", [None, 200])
@pytest.mark.parametrize("extend", list(EXTENDS))
def test_shared_prefix_extend(window, extend):
    # Extend steps: several causal tokens per request (the same row, kv_len p + 1, p + 2, ...)
    # after prefixes of different lengths, some of them shared with the previous request.
    g = torch.Generator().manual_seed(7)
    cached, new, prefixes = EXTENDS[extend]
    _, k_buf, v_buf, table, _, _ = make_shared_case(9, 3, 64, prefixes,
                                                    [c + e for c, e in zip(cached, new)])
    rows = torch.repeat_interleave(torch.arange(len(new)), torch.tensor(new))
    lens = torch.cat([torch.arange(c + 1, c + e + 1) for c, e in zip(cached, new)])
    q = torch.randn(len(lens), 9, 64, generator=g) * 2
    got = paged_attention_cpu(q, k_buf, v_buf, table, rows, lens, 0.125, window=window)
    want = reference(q, k_buf, v_buf, table, rows, lens, 0.125, window)
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)


def test_shared_prefix_large_scores():
    # Scores past exp's float range, their maximum in the shared keys for some rows and in a
    # row's own keys for others: the state a token takes over from its tile must carry the
    # running max. (Much larger scores round beyond the tolerance in any float32 dot product.)
    prefixes, lens = SHARING["full"]
    q, k_buf, v_buf, table, rows, lens = make_shared_case(9, 3, 64, prefixes, lens, seed=8,
                                                          scale_q=5.0)
    scores = torch.einsum("thd,nhd->thn", q, k_buf[table[0, :300]].repeat_interleave(3, 1))
    assert scores.amax() > 100
    got = paged_attention_cpu(q, k_buf, v_buf, table, rows, lens, 1.0)
    want = reference(q, k_buf, v_buf, table, rows, lens, 1.0)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)


def test_shared_prefix_is_the_unshared_result():
    # The same attention with every row's keys in slots of its own (nothing to tile): the two
    # differ only by float rounding.
    prefixes, lens = SHARING["partial"]
    q, k_buf, v_buf, table, rows, lens = make_shared_case(9, 3, 64, prefixes, lens, seed=9)
    flat = table.flatten()
    own = torch.arange(flat.numel()).view_as(table)
    got = paged_attention_cpu(q, k_buf, v_buf, table, rows, lens, 0.125)
    alone = paged_attention_cpu(q, k_buf[flat], v_buf[flat], own, rows, lens, 0.125)
    torch.testing.assert_close(got, alone, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (8, 4), (9, 3)])
@pytest.mark.parametrize("cap", [0.0, 5.0])
def test_shared_prefix_bits_do_not_depend_on_the_tile_size(heads, kv_heads, cap):
    # Each query row is one vector lane of its tile, and every lane does the same operations
    # whichever other rows share the tile: two tokens alone (a tile of 2 * group rows: one AVX2
    # vector) give the same bits as inside the tile of all 16 // group tokens (two vectors on
    # AVX2, which the QK and P.V loops take together), the first two in its lower lanes and
    # the last two in its upper ones.
    prefixes, lens = SHARING["full"]
    q, k_buf, v_buf, table, rows, lens = make_shared_case(heads, kv_heads, 64, prefixes, lens,
                                                          seed=10)
    n = 16 // (heads // kv_heads)
    full = paged_attention_cpu(q[:n], k_buf, v_buf, table, rows[:n], lens[:n], 0.125,
                               logit_cap=cap)
    for pair in (slice(0, 2), slice(n - 2, n)):
        alone = paged_attention_cpu(q[pair], k_buf, v_buf, table, rows[pair], lens[pair], 0.125,
                                    logit_cap=cap)
        assert torch.equal(full[pair], alone)
