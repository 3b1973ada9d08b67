"""CPU kernels for the canonical quantized layout (`sglang.kernels.quant_layout`): a small C
source compiled on first use (see `loader`) and called through ctypes."""

from sglang.kernels.cpu.quant_gemm import dequantize_cpu, quant_gemm_cpu

__all__ = ["dequantize_cpu", "quant_gemm_cpu"]
