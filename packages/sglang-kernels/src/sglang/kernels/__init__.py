"""sglang.kernels: kernels over plain torch tensors.

Attention over a token-level KV pool (read through a ``req_to_token`` table), KV store, RMSNorm,
rotary embeddings, gated activations, the fused mixture-of-experts MLP and the 4/8-bit
quantized GEMM (`quant_gemm`; `quant_gemm_interleaved` over the layout the GPU path repacks
weights into), each a Triton kernel with a torch reference in
``sglang.kernels.reference``; `quant_gemm_cpu` is that GEMM as a C kernel for the CPU
(``sglang.kernels.cpu``, compiled on first use), beside paged attention, the rotary + KV
write, RMSNorm and SiLU-and-mul for the CPU. Usable without the rest of sglang: ``pip install sglang-kernels``.

Importing this package is cheap: the public names below load their module (and triton) on first
use, so ``TRITON_INTERPRET=1`` may still be set after ``import sglang.kernels``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "can_launch": "_triton",
    "extend_attention": "attention.extend",
    "decode_attention": "attention.decode",
    "flash_attention": "attention.flash",
    "flash_measured_faster": "attention.flash",
    "varlen_extend_attention": "attention.varlen",
    "flash_varlen_supported": "attention.varlen",
    "cumulative_lengths": "attention.varlen",
    "gather_kv_slots": "attention.varlen",
    "DecodeWorkspace": "attention.decode_workspace",
    "DecodeRope": "attention.decode_rope",
    "default_num_kv_splits": "attention.decode_launch",
    "store_kv": "kv_store",
    "rmsnorm": "norm",
    "rotary_embedding": "rotary",
    "rotary_embedding_and_store_kv": "rotary",
    "rope_cos_sin_cache": "rotary",
    "rope_inv_freq": "rotary",
    "rope_frequencies": "rope_scaling",
    "rope_angles": "rope_scaling",
    "RopeFrequencies": "rope_scaling",
    "silu_and_mul": "activation",
    "gelu_and_mul": "activation",
    "argmax": "greedy",
    "greedy_argmax": "greedy",
    "gemv": "skinny_gemm",
    "GemvConfig": "skinny_gemm",
    "fused_moe": "moe",
    "MoeConfig": "moe",
    "align_by_expert": "moe_align",
    "quant_gemm": "quant_matmul",
    "QuantGemmConfig": "quant_matmul",
    "quant_gemm_interleaved": "quant_interleaved",
    "IlConfig": "quant_interleaved",
    "interleave_quant_weight": "quant_layout",
    "quant_gemm_cpu": "cpu",
    "dequantize_cpu": "cpu",
    "paged_attention_cpu": "cpu",
    "rmsnorm_cpu": "cpu",
    "silu_and_mul_cpu": "cpu",
    "rope_store_kv_cpu": "cpu",
    "pack_quant_weight": "quant_layout",
    "unpack_quant_weight": "quant_layout",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
