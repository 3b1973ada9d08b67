"""Encoder outputs by content hash, least recently used first out, under a byte budget.

Chunked prefill can cut an image's placeholder span in two; both chunks need rows of the same
encoder output, and the second must not run the encoder again. Repeated images in later requests
whose prefix is not cached (evicted, or after other text) reuse it too."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch

DEFAULT_BUDGET_BYTES = 256 << 20


class EncoderCache:
    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> torch.Tensor | None:
        """The entry (now the most recently used), counting a hit or a miss."""
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def get_or_encode(self, key: str, encode: Callable[[], torch.Tensor]) -> torch.Tensor:
        found = self.get(key)
        if found is None:
            found = encode()
            self.put(key, found)
        return found

    def put(self, key: str, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.budget_bytes:
            return  # larger than the whole budget: used once, never kept
        while self._entries and self.used_bytes + size > self.budget_bytes:
            _, old = self._entries.popitem(last=False)
            self.used_bytes -= old.numel() * old.element_size()
        self._entries[key] = value
        self.used_bytes += size

    def clear(self) -> None:
        self._entries.clear()
        self.used_bytes = 0
