"""The FP8 Linear's two matmuls and the choice between them (`layers/quantization/fp8_gemm`), on
CPU: `torch._scaled_mm` runs the W8A8 math there, so it is checked against float matmuls of the
same e4m3-rounded operands."""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.layers.quantization import fp8_gemm
from sglang.runtime.layers.quantization.fp8_gemm import (
    DEQUANT,
    FP8_DTYPE,
    W8A8,
    choose_fp8_gemm,
    dequant_linear,
    fp8_per_channel,
    quantize_rows,
    w8a8_linear,
)


def _operands(m: int, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=g) * torch.logspace(-2, 1, m)[:, None]  # rows of all sizes
    w8, scale = fp8_per_channel(torch.randn(n, k, generator=g))
    return x, w8, scale, torch.randn(n, generator=g)


def test_per_token_scales_map_each_row_max_to_448() -> None:
    x, *_ = _operands(6, 64, 16)
    x8, scale = quantize_rows(x)
    assert x8.dtype == FP8_DTYPE and scale.shape == (6, 1)
    torch.testing.assert_close(x8.float().abs().amax(1), torch.full((6,), 448.0))
    back = x8.float() * scale
    # e4m3 keeps 3 mantissa bits: normal values round within 2^-4 relative.
    normal = (x / scale).abs() >= 2**-6
    assert ((back - x).abs() <= x.abs() * 2**-4 + 1e-12)[normal].all()


def test_static_input_scale_saturates_beyond_its_range() -> None:
    x = torch.tensor([[0.5, -1.0, 3.0, -10.0]])
    x8, scale = quantize_rows(x, torch.tensor(2.0 / 448))
    assert scale.shape == (1, 1)
    torch.testing.assert_close(x8.float() * scale, torch.tensor([[0.5, -1.0, 2.0, -2.0]]))


@pytest.mark.parametrize(("m", "k", "n"), [(1, 128, 256), (7, 64, 48), (5, 24, 40)])
@pytest.mark.parametrize("static", [False, True])
def test_w8a8_is_the_matmul_of_the_rounded_operands(m: int, k: int, n: int, static: bool) -> None:
    x, w8, scale, bias = _operands(m, k, n)
    input_scale = torch.tensor(4.0 / 448) if static else None
    x8, x_scale = quantize_rows(x, input_scale)
    want = (x8.float() * x_scale) @ (w8.float() * scale[:, None]).t() + bias
    got = w8a8_linear(x.reshape(1, m, k), w8, scale, bias, input_scale)
    assert got.shape == (1, m, n) and got.dtype == torch.float32
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=1e-5)


def test_w8a8_keeps_bfloat16_activations_bfloat16() -> None:
    x, w8, scale, bias = _operands(3, 64, 32)
    got = w8a8_linear(x.bfloat16(), w8, scale, None)
    assert got.dtype == torch.bfloat16
    ref = dequant_linear(x, w8, scale, None)
    assert float((got.float() - ref).norm() / ref.norm()) < 0.1


def test_dequant_ignores_the_activation_scale() -> None:
    x, w8, scale, bias = _operands(4, 32, 16)
    want = x @ (w8.float() * scale[:, None]).t() + bias
    for input_scale in (None, torch.tensor(0.001)):
        torch.testing.assert_close(dequant_linear(x, w8, scale, bias, input_scale), want)


@pytest.mark.parametrize(("capability", "k", "n", "gemm", "why"), [
    ((9, 0), 4096, 1024, W8A8, "compute capability (9, 0)"),
    ((8, 9), 128, 256, W8A8, "compute capability (8, 9)"),
    ((8, 0), 4096, 1024, DEQUANT, "compute capability (8, 0) < (8, 9)"),
    ((9, 0), 4104, 1024, DEQUANT, "K=4104, N=1024 not multiples of 16 (_scaled_mm)"),
    ((9, 0), 4096, 1000, DEQUANT, "K=4096, N=1000 not multiples of 16 (_scaled_mm)"),
])
def test_gemm_choice_on_cuda(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], k: int,
                             n: int, gemm: str, why: str) -> None:
    monkeypatch.setattr(fp8_gemm.torch.cuda, "get_device_capability", lambda device: capability)
    assert choose_fp8_gemm(torch.device("cuda", 0), k, n) == (gemm, why)
