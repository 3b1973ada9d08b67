"""A GGUF file's metadata and tensor table, read without decoding its vocabulary.

`gguf.GGUFReader` builds a numpy view for every element of every metadata array up front: for
SmolLM2's 49k tokens and 48k merges that is ~250k views and most of an Engine's start-up on
CPU (5-7 s of ~12 s). The loader needs a handful of scalars, the length of the token list and
the tensors, so this index walks the same layout (GGUF v2/v3, little-endian) with `struct`,
keeps each array's place in the file and decodes it only when `contents()` is called. Tensors
are the library's own `ReaderTensor`s, with the same memory-mapped `data` views, so everything
downstream (dequantization, packing) sees what the reader would give it; a test compares the
two on real and synthetic files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType
from gguf.gguf_reader import ReaderTensor
from gguf.quants import quant_shape_to_byte_shape

MAGIC = 0x46554747  # "GGUF" read as a little-endian u32
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

# Fixed-size value types: struct code, numpy dtype.
_SCALARS: dict[GGUFValueType, tuple[str, Any]] = {
    GGUFValueType.UINT8: ("B", np.uint8), GGUFValueType.INT8: ("b", np.int8),
    GGUFValueType.UINT16: ("H", np.uint16), GGUFValueType.INT16: ("h", np.int16),
    GGUFValueType.UINT32: ("I", np.uint32), GGUFValueType.INT32: ("i", np.int32),
    GGUFValueType.FLOAT32: ("f", np.float32), GGUFValueType.BOOL: ("?", np.bool_),
    GGUFValueType.UINT64: ("Q", np.uint64), GGUFValueType.INT64: ("q", np.int64),
    GGUFValueType.FLOAT64: ("d", np.float64),
}
# Tensor types stored as plain numbers (the rest are quantized blocks, read as bytes).
_PLAIN_TENSORS = {
    GGMLQuantizationType.F16: np.float16, GGMLQuantizationType.F32: np.float32,
    GGMLQuantizationType.F64: np.float64, GGMLQuantizationType.I8: np.int8,
    GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
    GGMLQuantizationType.I64: np.int64,
}


@dataclass(frozen=True)
class IndexField:
    """One metadata value: where it lies, decoded on `contents()` as `GGUFReader` decodes it.
    `data` has one entry per array element (a range: only its length is cheap to need)."""

    buf: Any
    offset: int  # of the value (an array's: of its first element)
    type: GGUFValueType
    item_type: GGUFValueType | None = None  # arrays
    count: int = 1

    @property
    def data(self) -> range:
        return range(self.count)

    def contents(self) -> Any:
        if self.type == GGUFValueType.STRING:
            return _read_str(self.buf, self.offset)[0]
        if self.type != GGUFValueType.ARRAY:
            return struct.unpack_from("<" + _SCALARS[self.type][0], self.buf, self.offset)[0]
        if self.item_type == GGUFValueType.STRING:
            out, off = [], self.offset
            for _ in range(self.count):
                text, off = _read_str(self.buf, off)
                out.append(text)
            return out
        if self.item_type not in _SCALARS:
            raise ValueError(f"GGUF arrays of {self.item_type.name} are not supported")
        dtype = np.dtype(_SCALARS[self.item_type][1]).newbyteorder("<")
        return np.frombuffer(self.buf, dtype, self.count, self.offset).tolist()


def _read_str(buf: Any, off: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, off)
    return bytes(buf[off + 8 : off + 8 + n]).decode("utf-8"), off + 8 + n


def _skip(buf: Any, off: int, vtype: GGUFValueType) -> tuple[IndexField, int]:
    """The field at `off` and the offset just past it."""
    if vtype == GGUFValueType.STRING:
        (n,) = struct.unpack_from("<Q", buf, off)
        return IndexField(buf, off, vtype), off + 8 + n
    if vtype in _SCALARS:
        return IndexField(buf, off, vtype), off + struct.calcsize("<" + _SCALARS[vtype][0])
    if vtype != GGUFValueType.ARRAY:
        raise ValueError(f"unknown GGUF value type {int(vtype)}")
    item, count = struct.unpack_from("<IQ", buf, off)
    item = GGUFValueType(item)
    start = end = off + 12
    if item == GGUFValueType.STRING:
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(count):
            end += 8 + unpack(buf, end)[0]
    elif item in _SCALARS:
        end += count * struct.calcsize("<" + _SCALARS[item][0])
    else:  # arrays of arrays: stepped over; `contents()` declines them
        for _ in range(count):
            end = _skip(buf, end, item)[1]
    return IndexField(buf, start, vtype, item, count), end


class GGUFIndex:
    """`fields` (key -> IndexField) and `tensors` (gguf `ReaderTensor`s) of a GGUF file, the
    part of `gguf.GGUFReader`'s interface the loader uses."""

    def __init__(self, path: str | Path) -> None:
        # One read-only mapping: the tensors' views and (as a memoryview, cheap to slice) the
        # header parsed here.
        data = np.memmap(path, mode="r")
        buf = memoryview(data)
        magic, version, n_tensors, n_kv = struct.unpack_from("<IIQQ", buf, 0)
        if magic != MAGIC:
            raise ValueError(f"{path}: not a GGUF file (bad magic)")
        if version not in VERSIONS:
            raise ValueError(f"{path}: GGUF version {version} (readable: {VERSIONS})")
        off = 24
        self.fields: dict[str, IndexField] = {}
        for _ in range(n_kv):
            key, off = _read_str(buf, off)
            (vtype,) = struct.unpack_from("<I", buf, off)
            self.fields[key], off = _skip(buf, off + 4, GGUFValueType(vtype))
        infos = []
        for _ in range(n_tensors):
            name, off = _read_str(buf, off)
            (n_dims,) = struct.unpack_from("<I", buf, off)
            dims = struct.unpack_from(f"<{n_dims}Q", buf, off + 4)
            off += 4 + 8 * n_dims
            raw_type, data_off = struct.unpack_from("<IQ", buf, off)
            off += 12
            infos.append((name, dims, GGMLQuantizationType(raw_type), data_off))
        align = self.fields.get("general.alignment")
        alignment = int(align.contents()) if align is not None else DEFAULT_ALIGNMENT
        start = off + (-off % alignment)
        self.tensors = [_tensor(data, start, *info) for info in infos]


def _tensor(data: np.memmap, start: int, name: str, dims: tuple[int, ...],
            ggml_type: GGMLQuantizationType, offset: int) -> ReaderTensor:
    n_elems = int(np.prod(dims))
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    n_bytes = n_elems * type_size // block_size
    np_dims = tuple(reversed(dims))
    begin = start + offset
    if ggml_type in _PLAIN_TENSORS:
        dtype = np.dtype(_PLAIN_TENSORS[ggml_type])
        view = data[begin : begin + n_elems * dtype.itemsize].view(dtype).reshape(np_dims)
    else:
        view = data[begin : begin + n_bytes].reshape(quant_shape_to_byte_shape(np_dims, ggml_type))
    return ReaderTensor(name=name, tensor_type=ggml_type, shape=np.array(dims, np.uint64),
                        n_elements=n_elems, n_bytes=n_bytes, data_offset=begin, data=view,
                        field=None)
