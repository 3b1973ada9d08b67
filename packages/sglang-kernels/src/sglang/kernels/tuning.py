"""Launch configurations measured on a device, looked up by kernel, shape and row count.

Tuning done on one GPU does not carry over to another (an H100's best block shapes lose on an
H200), so kernels read their launch shapes from tables measured per device: JSON files named
`<kernel>_<device>.json`, where <device> is `torch.cuda.get_device_name()` with every
non-alphanumeric run turned into `_` (`NVIDIA_H200`). A table maps a shape key (the kernel
chooses it, e.g. `E8_H4096_I14336`) to row-count buckets (`"1"`, `"16"`, ...), each holding the
kernel's config fields. A lookup takes the bucket nearest the actual row count (ratio distance,
because launch shapes change with the order of magnitude of M, not its difference).

Tables ship inside this package (`sglang/kernels/tuned/`); `SGLANG_KERNEL_TUNING_DIR` names a
folder whose tables take precedence (a sweep's output used in the same run, before it is
committed). No table, or no entry for the shape: the kernel's own heuristic.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch

TUNING_DIR_ENV = "SGLANG_KERNEL_TUNING_DIR"
PACKAGED = Path(__file__).resolve().parent / "tuned"


def device_key(device: torch.device | str | None = None) -> str:
    if not torch.cuda.is_available():
        return "cpu"
    index = torch.cuda.current_device() if device is None else torch.device(device).index
    return _device_key(torch.cuda.current_device() if index is None else index)


@functools.cache
def _device_key(index: int) -> str:
    # Kernels look this up on every call: cudaGetDeviceProperties takes ~100 us, so once only.
    return re.sub(r"[^0-9A-Za-z]+", "_", torch.cuda.get_device_name(index)).strip("_")


def table_name(kernel: str, device: str) -> str:
    return f"{kernel}_{device}.json"


@functools.cache
def load_table(kernel: str, device: str) -> dict[str, dict[str, Any]]:
    """Every entry for `kernel` on `device`: the packaged table, overlaid by the override
    folder's (whole shape keys replace packaged ones)."""
    table: dict[str, dict[str, Any]] = {}
    folders = [PACKAGED]
    if override := os.environ.get(TUNING_DIR_ENV):
        folders.append(Path(override))
    for folder in folders:
        path = folder / table_name(kernel, device)
        if path.is_file():
            table.update(json.loads(path.read_text()))
    return table


def lookup(kernel: str, shape_key: str, rows: int, device: str | None = None) -> Any | None:
    """The entry of the measured bucket nearest `rows`, or None when none was measured."""
    buckets = load_table(kernel, device or device_key()).get(shape_key)
    if not buckets:
        return None
    nearest = min(buckets, key=lambda b: abs(math.log(max(int(b), 1) / max(rows, 1))))
    return buckets[nearest]


def measured_entry(kernel: str, shape_key: str, rows: int, device: torch.device) -> Any | None:
    """`lookup` for tensors on `device`: the interpreter (tensors on the CPU) reads tables of
    the device key "cpu", which only tests write."""
    return lookup(kernel, shape_key, rows, device_key(device) if device.type == "cuda" else "cpu")


def measured_config(cls: Any, kernel: str, shape_key: str, rows: int,
                    device: torch.device) -> Any | None:
    """`cls` (a config dataclass) from the measured entry for `rows` on `device`, keeping only
    its fields (entries also record times); None when none was measured."""
    entry = measured_entry(kernel, shape_key, rows, device)
    if entry is None:
        return None
    fields = cls.__dataclass_fields__
    return cls(**{f: v for f, v in entry.items() if f in fields})
