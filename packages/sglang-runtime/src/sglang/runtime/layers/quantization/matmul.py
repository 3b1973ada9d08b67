"""The quantized matmul behind every packed layer: the Triton `quant_gemm_interleaved` (or
`quant_gemm` for weights left in the canonical layout) on CUDA, the
compiled `quant_gemm_cpu` on the CPU (which falls back to the torch reference, column slice by
column slice, where no C compiler is available)."""

from __future__ import annotations

import torch


def quant_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                 zeros: torch.Tensor, bits: int, group_size: int, cpu_int8: bool = False,
                 interleaved: bool = False, integer_zeros: bool = False) -> torch.Tensor:
    """x [M, K] @ w [K, N] in the canonical layout of `sglang.kernels.quant_layout` (or its
    interleaved layout when `interleaved`, CUDA only); `cpu_int8`: on the CPU, large batches
    with int8 activations (`quant_gemm_cpu`'s `int8`); `integer_zeros`: every zero is a whole
    number in [0, 2**bits] (`quant_gemm_interleaved`'s)."""
    if interleaved:
        from sglang.kernels.quant_interleaved import quant_gemm_interleaved

        return quant_gemm_interleaved(x, qweight, scales, zeros, bits, group_size,
                                      integer_zeros=integer_zeros)
    if x.is_cuda:
        from sglang.kernels import quant_gemm

        return quant_gemm(x, qweight, scales, zeros, bits, group_size)
    from sglang.kernels import quant_gemm_cpu

    return quant_gemm_cpu(x, qweight, scales, zeros, bits, group_size, int8=cpu_int8)
