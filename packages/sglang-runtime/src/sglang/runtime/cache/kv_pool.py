"""Token-level KV storage: one slot holds one token's K and V for every layer."""

from __future__ import annotations

import torch


class KVPool:
    """Per layer, K and V buffers of shape [num_slots + 1, kv_heads, head_dim].

    The extra last row is a scratch slot: padded positions (CUDA-graph padding, masked tokens)
    write there so they never touch a real slot.
    """

    def __init__(
        self,
        num_slots: int,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        self.num_slots = num_slots
        self.num_layers = num_layers
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dtype = dtype
        self.device = torch.device(device)
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
        self.k[layer_id][loc] = k.to(self.dtype)
        self.v[layer_id][loc] = v.to(self.dtype)

    def get_kv(self, layer_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[layer_id], self.v[layer_id]

    @staticmethod
    def bytes_per_slot(num_layers: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        return 2 * num_layers * num_kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()
