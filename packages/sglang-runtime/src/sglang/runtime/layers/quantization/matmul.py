"""The quantized matmul behind every packed layer: the Triton `quant_gemm` on CUDA; on CPU the
compiled `quant_gemm_cpu` of sglang-kernels when it is there, else the torch reference.

The reference dequantizes the whole weight per call; it runs here over slices of the output
columns so a large matrix (a packed LM head: 49152 x 576 for SmolLM2) never exists in float
all at once, which keeps packed models' memory small on machines without a compiler.
"""

from __future__ import annotations

import torch

# Output columns per reference call: about 4 MiB of float32 weight at K = 1024.
_REF_COLUMNS_PER_MIB = 256 * 1024


def quant_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                 zeros: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """x [M, K] @ w [K, N] in the canonical layout of `sglang.kernels.quant_layout`."""
    if x.is_cuda:
        from sglang.kernels import quant_gemm

        return quant_gemm(x, qweight, scales, zeros, bits, group_size)
    try:
        from sglang.kernels import quant_gemm_cpu  # type: ignore[attr-defined]
    except ImportError:
        return _reference_by_columns(x, qweight, scales, zeros, bits, group_size)
    return quant_gemm_cpu(x, qweight, scales, zeros, bits, group_size)  # type: ignore[no-any-return]


def _reference_by_columns(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                          zeros: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    from sglang.kernels.reference import quant_gemm_ref

    n, k = qweight.shape[1], x.shape[-1]
    step = max(256, 4 * _REF_COLUMNS_PER_MIB // max(k, 1))
    if n <= step:
        return quant_gemm_ref(x, qweight, scales, zeros, bits, group_size)
    return torch.cat([
        quant_gemm_ref(x, qweight[:, i : i + step], scales[:, i : i + step],
                       zeros[:, i : i + step], bits, group_size)
        for i in range(0, n, step)
    ], dim=1)
