"""The CPU RMSNorm and SiLU-and-mul C kernels against torch's ops (float32)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sglang.kernels import rmsnorm_cpu, silu_and_mul_cpu
from sglang.kernels.cpu.loader import load_library

pytestmark = pytest.mark.skipif(load_library() is None, reason="no C compiler")


def _ref_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


@pytest.mark.parametrize("shape", [(1, 576), (64, 576), (7, 3, 64), (5, 100), (600, 1024)])
def test_rmsnorm_matches_torch(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 3
    res = torch.randn(shape, generator=g)
    w = torch.rand(shape[-1], generator=g) + 0.5
    out = rmsnorm_cpu(x, w, 1e-5)
    torch.testing.assert_close(out, _ref_norm(x, w, 1e-5), rtol=2e-6, atol=2e-6)
    normed, summed = rmsnorm_cpu(x, w, 1e-5, res)
    assert torch.equal(summed, x + res)  # one float add per element: exact
    torch.testing.assert_close(normed, _ref_norm(x + res, w, 1e-5), rtol=2e-6, atol=2e-6)


def test_rmsnorm_strided_rows() -> None:
    base = torch.randn(8, 2, 64)
    x = base[:, 0]  # rows of their own stride
    w = torch.rand(64) + 0.5
    torch.testing.assert_close(rmsnorm_cpu(x, w, 1e-6), _ref_norm(x, w, 1e-6), rtol=2e-6,
                               atol=2e-6)


def test_rmsnorm_declines_what_it_does_not_take() -> None:
    w = torch.ones(16)
    assert rmsnorm_cpu(torch.randn(4, 16, dtype=torch.float64), w, 1e-6) is None
    assert rmsnorm_cpu(torch.randn(4, 16), w.double(), 1e-6) is None
    assert rmsnorm_cpu(torch.randn(16, 4).T, w, 1e-6) is None  # features not contiguous
    assert rmsnorm_cpu(torch.randn(4, 16), torch.ones(8), 1e-6) is None


@pytest.mark.parametrize("shape", [(1, 3072), (64, 3072), (3, 5, 40)])
def test_silu_and_mul_matches_torch(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 6
    gate, up = x.chunk(2, dim=-1)
    torch.testing.assert_close(silu_and_mul_cpu(x), F.silu(gate) * up, rtol=3e-6, atol=1e-6)


def test_silu_and_mul_extremes() -> None:
    gate = torch.tensor([[-1e4, -100.0, -88.0, -87.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 87.0,
                          88.0, 100.0, 1e4]])
    x = torch.cat([gate, torch.full_like(gate, 0.5)], dim=-1)
    got = silu_and_mul_cpu(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, F.silu(gate) * 0.5, rtol=3e-6, atol=1e-30)


def test_silu_and_mul_declines_odd_widths() -> None:
    assert silu_and_mul_cpu(torch.randn(2, 7)) is None
    assert silu_and_mul_cpu(torch.randn(2, 8, dtype=torch.float16)) is None


def test_silu_and_mul_vector_lanes_match_scalar_tail() -> None:
    """Rows of 8k + 7 values run 8 at a time and then as a zero-padded tail: the same value
    gives the same bits either way."""
    g = torch.Generator().manual_seed(2)
    vals = torch.cat([torch.randn(7 * 16, generator=g) * s for s in (0.1, 3.0, 40.0)]
                     + [torch.tensor([-90.0, -88.0, -87.0, -0.0, 0.0, 87.0, 88.0, 90.0, 1e-30])])
    vals = vals[: vals.numel() // 7 * 7].view(-1, 7)
    n = 15  # one vector of 8, then a tail of 7
    gate = torch.cat([vals.repeat(1, 2)[:, :8], vals], dim=1)  # tail = the values again
    assert gate.shape[1] == n
    up = torch.rand(gate.shape, generator=g) + 0.5
    up[:, 8:] = up[:, :7]
    out = silu_and_mul_cpu(torch.cat([gate, up], dim=1))
    assert torch.equal(out[:, :7], out[:, 8:])
