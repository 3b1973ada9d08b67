"""Request table: ``table[row, pos]`` is the KV slot of token ``pos`` of the request in ``row``.

Attention kernels read K/V through this table, so a cached prefix is shared by writing its slot
indices into a row rather than copying K/V.
"""

from __future__ import annotations

import torch

from sglang.runtime.transfer import host_int64, to_device


class ReqToTokenPool:
    def __init__(self, max_reqs: int, max_context: int, device: torch.device | str) -> None:
        if max_reqs <= 0 or max_context <= 0:
            raise ValueError(f"bad ReqToTokenPool shape ({max_reqs}, {max_context})")
        self.max_reqs = max_reqs
        self.max_context = max_context
        self.device = torch.device(device)
        self.table = torch.zeros((max_reqs, max_context), dtype=torch.int64, device=self.device)
        # The host keeps its own copy of every row on GPUs: the scheduler reads slots back
        # (caching a prefix, releasing a request) and a device read would wait for the GPU.
        self.host = self.table if self.device.type == "cpu" else torch.zeros_like(
            self.table, device="cpu"
        )
        # Pop from the end so rows come out as 0, 1, 2, ... which keeps traces readable.
        self._free_rows: list[int] = list(range(max_reqs - 1, -1, -1))
        self._in_use = [False] * max_reqs

    @property
    def available(self) -> int:
        return len(self._free_rows)

    def alloc(self) -> int | None:
        if not self._free_rows:
            return None
        row = self._free_rows.pop()
        self._in_use[row] = True
        return row

    def free(self, row: int) -> None:
        if not 0 <= row < self.max_reqs:
            raise ValueError(f"row {row} out of range [0, {self.max_reqs})")
        if not self._in_use[row]:
            raise ValueError(f"double free of request row {row}")
        self._in_use[row] = False
        self._free_rows.append(row)

    def write(self, row: int, start: int, slots: torch.Tensor) -> None:
        n = slots.numel()
        if not self._in_use[row]:
            raise ValueError(f"write to unallocated request row {row}")
        if start < 0 or start + n > self.max_context:
            raise ValueError(f"write [{start}, {start + n}) exceeds max_context {self.max_context}")
        values = slots.reshape(-1).to(dtype=torch.int64)
        if self.host is not self.table:
            # The device copy must come from host memory: a device tensor would need a sync.
            values = values.cpu()
            self.host[row, start : start + n] = values
        self.table[row, start : start + n] = to_device(values, self.device)

    def write_one_each(
        self, rows: list[int], positions: list[int], slots: torch.Tensor
    ) -> torch.Tensor:
        """table[rows[i], positions[i]] = slots[i] (host slots, the allocator's): a step's new
        slots in one launch and one host-to-device copy instead of one of each per request.
        Returns the slots on the table's device (a step's out_cache_loc, copied already)."""
        for row, pos in zip(rows, positions):
            if not self._in_use[row] or not 0 <= pos < self.max_context:
                raise ValueError(f"bad decode write at row {row}, position {pos}")
        packed = host_int64(rows, positions, slots.tolist()).view(3, len(rows))
        if self.host is not self.table:
            self.host.index_put_((packed[0], packed[1]), packed[2])
        packed = to_device(packed, self.device)
        self.table.index_put_((packed[0], packed[1]), packed[2])
        return packed[2]

    def read_host(self, row: int, start: int, end: int) -> torch.Tensor:
        """Slots of positions [start, end) of `row`, from the host copy (no device sync)."""
        return self.host[row, start:end]

    def read(self, row: int, length: int) -> torch.Tensor:
        """Slots of the first ``length`` tokens of ``row`` (a view on the table's device)."""
        return self.table[row, :length]

    def __repr__(self) -> str:
        return (
            f"ReqToTokenPool(max_reqs={self.max_reqs}, max_context={self.max_context}, "
            f"available={self.available}, device={self.device})"
        )
