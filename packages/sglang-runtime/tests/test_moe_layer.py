"""The MoE layer's pieces: routing per family, the grouped CPU path against a per-token loop,
and the choice of path: torch on CPU, the fused Triton kernel on CUDA (GPU tests)."""

from __future__ import annotations

import pytest
import torch

import sglang.kernels as kernels
from sglang.runtime.layers.moe import RouterSpec, StackedExperts, grouped_experts, route


def _experts(device: str, dtype: torch.dtype) -> tuple[StackedExperts, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    experts = StackedExperts(4, 32, 24, dtype=torch.float32)
    with torch.no_grad():
        experts.w13.copy_(torch.randn(4, 48, 32, generator=g) * 0.2)
        experts.w2.copy_(torch.randn(4, 32, 24, generator=g) * 0.2)
    return experts.to(device=device, dtype=dtype), torch.randn(11, 32, generator=g)


@pytest.mark.parametrize(("renorm", "sums_to_one"), [(1.0, True), (None, False)])
def test_router_renormalises_as_the_family_says(renorm: float | None, sums_to_one: bool) -> None:
    logits = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    weights, ids = route(logits, RouterSpec(top_k=2, renorm_p=renorm))
    assert ids.shape == (5, 2) and torch.equal(ids, logits.topk(2, dim=-1).indices)
    assert torch.allclose(weights.sum(-1), torch.ones(5)) == sums_to_one


def test_grouped_path_equals_a_per_token_loop() -> None:
    g = torch.Generator().manual_seed(1)
    x, w13 = torch.randn(9, 8, generator=g), torch.randn(3, 10, 8, generator=g)
    w2 = torch.randn(3, 8, 5, generator=g)
    weights, ids = route(torch.randn(9, 3, generator=g), RouterSpec(top_k=2))
    want = torch.zeros_like(x)
    for t in range(9):
        for w, e in zip(weights[t], ids[t], strict=True):
            gate, up = (w13[e] @ x[t]).chunk(2)
            want[t] += w * (w2[e] @ (torch.nn.functional.silu(gate) * up))
    torch.testing.assert_close(grouped_experts(x, w13, w2, weights, ids), want)


def test_cpu_tensors_take_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fused kernel ran on CPU tensors")

    monkeypatch.setattr(kernels, "fused_moe", refuse)
    experts, x = _experts("cpu", torch.float32)
    weights, ids = route(torch.randn(11, 4), RouterSpec(top_k=2))
    torch.testing.assert_close(experts(x, weights, ids),
                               grouped_experts(x, experts.w13, experts.w2, weights, ids))


@pytest.mark.gpu
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_cuda_tensors_take_the_fused_kernel(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, tol: float
) -> None:
    calls = []
    real = kernels.fused_moe
    monkeypatch.setattr(kernels, "fused_moe", lambda *a, **k: calls.append(1) or real(*a, **k))
    experts, x = _experts("cuda", dtype)
    weights, ids = route(torch.randn(11, 4, device="cuda"), RouterSpec(top_k=2))
    got = experts(x.to("cuda", dtype), weights, ids)
    want = grouped_experts(x.cuda(), experts.w13.float(), experts.w2.float(), weights, ids)
    assert calls and got.dtype == dtype
    torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)
