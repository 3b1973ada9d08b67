"""The fused MoE kernel (sorted-by-expert grouped GEMMs) against the per-token torch reference."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import DEVICE, DTYPES, randn

from sglang.kernels import MoeConfig, align_by_expert, fused_moe
from sglang.kernels.reference import align_by_expert_ref, fused_moe_ref

SMALL = MoeConfig(block_m=16, block_n=16, block_k=16)
TOL = {
    torch.float32: dict(atol=1e-4, rtol=1e-4),
    torch.float16: dict(atol=2e-2, rtol=2e-2),
    torch.bfloat16: dict(atol=6e-2, rtol=6e-2),
}


def _routing(tokens: int, experts: int, top_k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(tokens, experts, generator=g)
    weights, ids = scores.softmax(-1).topk(top_k, dim=-1)
    return weights.to(DEVICE), ids.to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("tokens", "experts", "top_k"), [(1, 4, 2), (7, 4, 2), (37, 8, 3)])
def test_fused_moe_matches_reference(dtype, tokens, experts, top_k):
    # hidden 40 / intermediate 24: neither a multiple of the blocks, so edge masks matter.
    hidden, inter = 40, 24
    x = randn(tokens, hidden, dtype=dtype)
    w13 = randn(experts, 2 * inter, hidden, dtype=dtype, seed=1) * 0.3
    w2 = randn(experts, hidden, inter, dtype=dtype, seed=2) * 0.3
    weights, ids = _routing(tokens, experts, top_k, seed=3)
    got = fused_moe(x, w13, w2, weights, ids, config=SMALL)
    want = fused_moe_ref(x, w13, w2, weights, ids)
    assert got.shape == (tokens, hidden) and got.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), **TOL[dtype])


def test_unused_experts_and_default_config():
    # Every token picks the same two of 6 experts: the others get no block at all.
    x = randn(5, 32, dtype=torch.float32)
    w13 = randn(6, 64, 32, dtype=torch.float32, seed=1) * 0.3
    w2 = randn(6, 32, 32, dtype=torch.float32, seed=2) * 0.3
    ids = torch.tensor([[4, 1]] * 5, device=DEVICE)
    weights = torch.full((5, 2), 0.5, device=DEVICE)
    torch.testing.assert_close(
        fused_moe(x, w13, w2, weights, ids), fused_moe_ref(x, w13, w2, weights, ids),
        atol=1e-4, rtol=1e-4,
    )


def test_alignment_pads_each_expert_to_whole_blocks():
    ids = torch.tensor([[2, 0], [2, 1], [0, 2]], device=DEVICE)
    align = align_by_expert(ids, num_experts=4, block_m=4)
    used = int(align.num_padded.item())
    assert used == 12  # experts 0, 1, 2 hold 2, 1, 3 pairs: one block of 4 each
    sorted_ids = align.sorted_ids[:used].tolist()
    blocks = [sorted_ids[i : i + 4] for i in range(0, used, 4)]
    flat = ids.reshape(-1).tolist()
    for block, expert in zip(blocks, align.expert_ids.tolist(), strict=False):
        real = [p for p in block if p < 6]
        assert real and all(flat[p] == expert for p in real)
    assert sorted(p for p in sorted_ids if p < 6) == list(range(6))


@pytest.mark.parametrize(("pairs", "experts", "block_m"), [(1, 8, 16), (2, 8, 16), (37, 5, 4),
                                                          (300, 64, 16), (700, 8, 64)])
def test_alignment_kernel_equals_the_torch_reference(pairs, experts, block_m):
    # 300 and 700 pairs span several of the kernel's chunks; 64 experts a wide one-hot.
    g = torch.Generator().manual_seed(pairs)
    ids = torch.randint(0, experts, (pairs, 1), generator=g).to(DEVICE)
    ids[: pairs // 3] = experts - 1  # one crowded expert, so runs differ in length
    align = align_by_expert(ids, experts, block_m)
    sorted_ids, expert_ids, num_padded = align_by_expert_ref(ids, experts, block_m)
    assert torch.equal(align.sorted_ids.cpu(), sorted_ids.cpu())
    assert torch.equal(align.expert_ids.cpu(), expert_ids.cpu())
    assert torch.equal(align.num_padded.cpu(), num_padded.cpu())


@pytest.mark.parametrize("tokens", [3, 40, 150])  # each default launch shape (MoeConfig.for_shape)
def test_default_launch_shapes_fp16(tokens):
    x = randn(tokens, 64, dtype=torch.float16)
    w13 = randn(4, 192, 64, dtype=torch.float16, seed=1) * 0.2
    w2 = randn(4, 64, 96, dtype=torch.float16, seed=2) * 0.2
    weights, ids = _routing(tokens, 4, 2, seed=4)
    torch.testing.assert_close(fused_moe(x, w13, w2, weights, ids).float(),
                               fused_moe_ref(x, w13, w2, weights, ids).float(), **TOL[torch.float16])

