"""Token-level KV storage: one slot holds one token's K and V for every layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sglang.runtime.cache.kv_quant import is_fp8, quantize


class KVPool:
    """Per layer, K and V buffers of shape [num_slots + 1, kv_heads, head_dim].

    The extra last row is a scratch slot: padded positions (CUDA-graph padding, masked tokens)
    write there so they never touch a real slot.

    With an fp8 `dtype` (``quantized``) the buffers hold ``saturate(x / scale)`` and readers
    dequantize with the layer's `scales` (``k_scales``/``v_scales``, one float per layer,
    default 1.0); other dtypes ignore the scales.
    """

    def __init__(
        self,
        num_slots: int,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
        k_scales: Sequence[float] | None = None,
        v_scales: Sequence[float] | None = None,
    ) -> None:
        self.num_slots = num_slots
        self.num_layers = num_layers
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dtype = dtype
        self.device = torch.device(device)
        self.quantized = is_fp8(dtype)
        self.k_scales = [float(s) for s in (k_scales or [1.0] * num_layers)]
        self.v_scales = [float(s) for s in (v_scales or [1.0] * num_layers)]
        if len(self.k_scales) != num_layers or len(self.v_scales) != num_layers:
            raise ValueError(f"need one K and one V scale per layer ({num_layers})")
        shape = (num_slots + 1, num_kv_heads, head_dim)
        # Slots are always written before they are read, so only the scratch row needs defined
        # (finite) values; zeroing gigabytes would cost seconds at start-up.
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        for buf in (*self.k, *self.v):
            buf[num_slots].zero_()

    @property
    def scratch_slot(self) -> int:
        return self.num_slots

    def set_kv(self, layer_id: int, loc: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        if self.quantized:
            k = quantize(k, self.k_scales[layer_id], self.dtype)
            v = quantize(v, self.v_scales[layer_id], self.dtype)
        self.k[layer_id][loc] = k.to(self.dtype)
        self.v[layer_id][loc] = v.to(self.dtype)

    def get_kv(self, layer_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's raw buffers (fp8 codes when ``quantized``: scale them by `scales`)."""
        return self.k[layer_id], self.v[layer_id]

    def scales(self, layer_id: int) -> tuple[float, float]:
        """(k_scale, v_scale) of the layer; 1.0 for an unquantized pool."""
        if not self.quantized:
            return 1.0, 1.0
        return self.k_scales[layer_id], self.v_scales[layer_id]

    @staticmethod
    def bytes_per_slot(num_layers: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        """Bytes one token takes in the pool: its element size, so fp8 holds 2x the tokens of
        bf16 (4x of fp32) in the same memory; the per-layer scales are negligible."""
        return 2 * num_layers * num_kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()
