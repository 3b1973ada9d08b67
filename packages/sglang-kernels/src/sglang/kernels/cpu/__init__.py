"""CPU kernels: the quantized GEMM for the canonical quantized layout
(`sglang.kernels.quant_layout`), attention over the paged KV pool, RMSNorm and SiLU-and-mul:
small C sources compiled on first use (see `loader`) and called through ctypes."""

from sglang.kernels.cpu.norm_act import rmsnorm_cpu, silu_and_mul_cpu
from sglang.kernels.cpu.paged_attention import paged_attention_cpu, rope_store_kv_cpu
from sglang.kernels.cpu.quant_gemm import dequantize_cpu, quant_gemm_cpu

__all__ = ["dequantize_cpu", "paged_attention_cpu", "quant_gemm_cpu", "rmsnorm_cpu",
           "rope_store_kv_cpu", "silu_and_mul_cpu"]
