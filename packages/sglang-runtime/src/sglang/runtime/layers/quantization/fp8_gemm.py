"""The two matmuls of an FP8 Linear, and the one place that chooses between them.

Both take the weight as float8_e4m3fn [N, K] with one float32 scale per output row [N]
(per-tensor checkpoint scales arrive expanded over their rows, which is exact):

- `dequant_linear` (weight-only): w8 * scale in x's dtype, then an ordinary matmul; any device.
- `w8a8_linear`: x is quantized per token (row absmax / 448, or the checkpoint's static
  input scale) to e4m3 too, and `torch._scaled_mm` multiplies the two fp8 operands with
  row-wise scales (scale_a [M, 1], scale_b [1, N]). On CUDA devices with FP8 tensor cores
  (compute capability 8.9 and up: Ada, Hopper) this is the fp8 GEMM; torch's CPU build runs
  the same math, which is how the tests check it.

`choose_fp8_gemm` picks W8A8 on such CUDA devices unless the shape breaks `_scaled_mm`'s rules
there (K and N multiples of 16), and says why it fell back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448

W8A8 = "w8a8"
DEQUANT = "dequant"
FP8_GEMMS = (W8A8, DEQUANT)
# _scaled_mm on CUDA needs K and N (the fp8 operands' inner and outer dims) in multiples of 16.
CUDA_DIM_MULTIPLE = 16
FP8_MIN_CAPABILITY = (8, 9)


def fp8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, K] float -> (fp8 [N, K], float32 scales [N]) with w ~= fp8 * scale per row."""
    w = weight.float()
    scale = (w.abs().amax(dim=1) / FP8_MAX).clamp(min=1e-12)
    return (w / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def quantize_rows(x: torch.Tensor, input_scale: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, K] -> (e4m3 [M, K], float32 scales [M, 1]): per token (row absmax / 448) when
    `input_scale` is None, else the static scalar for every row (saturating what exceeds it)."""
    xf = x.float()
    if input_scale is None:
        scale = (xf.abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=1e-12)
    else:
        scale = input_scale.float().reshape(1, 1).expand(x.shape[0], 1).contiguous()
    return (xf / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def w8a8_linear(x: torch.Tensor, w8: torch.Tensor, w_scale: torch.Tensor,
                bias: torch.Tensor | None, input_scale: torch.Tensor | None = None
                ) -> torch.Tensor:
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    x8, x_scale = quantize_rows(x2, input_scale)
    # Row-wise scaling on CUDA writes bfloat16 only; other dtypes are cast back after.
    out_dtype = torch.bfloat16 if x.is_cuda else x.dtype
    y = torch._scaled_mm(x8, w8.t(), scale_a=x_scale, scale_b=w_scale.float().reshape(1, -1),
                         out_dtype=out_dtype).to(x.dtype)
    if bias is not None:
        y = y + bias
    return y.reshape(*shape[:-1], y.shape[-1])


def dequant_linear(x: torch.Tensor, w8: torch.Tensor, w_scale: torch.Tensor,
                   bias: torch.Tensor | None, input_scale: torch.Tensor | None = None
                   ) -> torch.Tensor:
    # The activation scale matters only to W8A8; the weight-only path keeps x as it is.
    w = w8.to(torch.float32) * w_scale[:, None]
    return F.linear(x, w.to(x.dtype), bias)


FP8_GEMM_FNS = {W8A8: w8a8_linear, DEQUANT: dequant_linear}


def choose_fp8_gemm(device: torch.device, k: int, n: int) -> tuple[str, str]:
    """(gemm, why) for an fp8 Linear of K inputs and N outputs on `device`."""
    if device.type != "cuda":
        return DEQUANT, f"{device.type}: no fp8 tensor cores"
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        return DEQUANT, f"compute capability {capability} < {FP8_MIN_CAPABILITY}"
    if k % CUDA_DIM_MULTIPLE or n % CUDA_DIM_MULTIPLE:
        return DEQUANT, f"K={k}, N={n} not multiples of {CUDA_DIM_MULTIPLE} (_scaled_mm)"
    return W8A8, f"compute capability {capability}"
