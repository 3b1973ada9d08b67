"""FP8 KV cache: storage dtypes, per-layer scales, quantize on store and dequantize on load.

K and V are stored as ``q = saturate(x / scale)`` in a one-byte float format and read back as
``q * scale``; the scale is per layer (one for K, one for V). Scales come from the checkpoint
(``k_scale``/``v_scale`` or a shared ``kv_scale`` of a layer's attention module), else 1.0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from sglang.kernels.reference import FP8_DTYPES, dequantize_fp8_ref, quantize_fp8_ref
from sglang.runtime.config import KV_CACHE_DTYPES

# kv_cache_dtype name -> storage dtype; None stores in the model's dtype.
STORAGE_DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "fp8_e4m3": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}
assert tuple(STORAGE_DTYPES) == KV_CACHE_DTYPES, "config.KV_CACHE_DTYPES is the flag's choices"


def resolve_kv_dtype(name: str, model_dtype: torch.dtype) -> torch.dtype:
    """The pool's storage dtype for ``--kv-cache-dtype name``."""
    if name not in STORAGE_DTYPES:
        raise ValueError(
            f"unknown kv_cache_dtype {name!r}; choose from {', '.join(STORAGE_DTYPES)}"
        )
    return STORAGE_DTYPES[name] or model_dtype


def is_fp8(dtype: torch.dtype) -> bool:
    return dtype in FP8_DTYPES


# One definition of the rounding, shared with the kernels' references.
quantize = quantize_fp8_ref
dequantize = dequantize_fp8_ref


def check_kv_support(
    kv_dtype: torch.dtype, backend: str, device: torch.device
) -> None:
    """Fail before the first forward where the combination cannot run: Triton converts
    float8_e4m3fn only on NVIDIA compute capability >= 8.9 (Ada, Hopper)."""
    if kv_dtype != torch.float8_e4m3fn or device.type != "cuda" or backend != "triton":
        return
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        raise ValueError(
            f"kv_cache_dtype=fp8_e4m3 with the triton attention backend needs compute "
            f"capability >= 8.9, this GPU has {major}.{minor}; use fp8_e5m2, "
            f"attention_backend=torch, or kv_cache_dtype=auto"
        )


# "model.layers.3.self_attn.k_scale" and the like (HF FP8 checkpoints: vLLM/compressed-tensors
# write k_scale/v_scale, older AutoFP8 one kv_scale for both).
_SCALE_NAME = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:.*\.)?(k_scale|v_scale|kv_scale)$")


@dataclass
class KVScales:
    """Per-layer K and V scales found in a checkpoint (layers it names; the rest use 1.0)."""

    k: dict[int, float] = field(default_factory=dict)
    v: dict[int, float] = field(default_factory=dict)

    def take(self, named: Iterable[tuple[str, object]]) -> Iterator[tuple[str, object]]:
        """Pass every tensor through except the KV scales, which are recorded here (the model
        has no parameter for them)."""
        for name, tensor in named:
            m = _SCALE_NAME.search(name)
            if m is None:
                yield name, tensor
                continue
            layer, kind = int(m.group(1)), m.group(2)
            value = _scalar(tensor)
            if kind in ("k_scale", "kv_scale"):
                self.k[layer] = value
            if kind in ("v_scale", "kv_scale"):
                self.v[layer] = value

    def per_layer(self, num_layers: int) -> tuple[list[float], list[float]]:
        return (
            [self.k.get(i, 1.0) for i in range(num_layers)],
            [self.v.get(i, 1.0) for i in range(num_layers)],
        )

    def __bool__(self) -> bool:
        return bool(self.k or self.v)


def _scalar(tensor: object) -> float:
    # Safetensors checkpoints hand lazy tensors (loading.source.LazyWeight).
    t = tensor if isinstance(tensor, torch.Tensor) else tensor.load()  # type: ignore[attr-defined]
    value = float(t.float().reshape(-1).max())
    if not value > 0.0:
        raise ValueError(f"KV cache scale must be positive, the checkpoint has {value}")
    return value
