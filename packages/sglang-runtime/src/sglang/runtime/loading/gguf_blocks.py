"""GGUF block formats decoded into the canonical quantized layout's pieces, in numpy.

A GGUF row of a weight matrix (one output feature, `cols` input features) is a run of blocks;
each format here becomes integer codes q in [0, 2**bits), one scale s and one float zero point
z per group of consecutive values, with w = (q - z) * s (`sglang.kernels.quant_layout`):

    format  block  bits  group  llama.cpp's rule            ->  s          z
    Q8_0      32     8     32   w = d * x (x int8)              d          128 (q = x + 128)
    Q4_0      32     4     32   w = d * (q - 8)                 d          8
    Q4_1      32     4     32   w = d * q + m                   d          -m / d
    Q4_K     256     4     32   w = d * sc * q - dmin * mn      d * sc     dmin * mn / s
    Q5_K     256     8     32   same with 5-bit q               d * sc     dmin * mn / s
    Q6_K     256     8     16   w = d * sc * (q - 32)           d * sc     32

A group whose scale is 0 (Q4_1 with d = 0, K-quant sub-blocks with sc = 0) holds one constant
c for all its values (m, -dmin * mn, or 0); it becomes codes 1, z = 0, s = c, which is exact.
Everything is vectorised over the blocks: no Python loop touches single values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # codes, s, z, constant


@dataclass
class GGUFCodes:
    """Rows of a GGUF matrix as codes uint8 [rows, cols] and float32 scales / zeros
    [rows, cols // group]: w[r, c] = (codes[r, c] - zeros[r, c // group]) * scales[...]."""

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    bits: int
    group: int

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.codes.shape
        return rows, cols

    def take_rows(self, index: np.ndarray | slice) -> GGUFCodes:
        return GGUFCodes(self.codes[index], self.scales[index], self.zeros[index], self.bits,
                         self.group)

    def narrow_cols(self, start: int, length: int) -> GGUFCodes:
        """Columns [start, start + length), which must be whole groups (a row-parallel rank's
        share of the input features)."""
        if start % self.group or length % self.group:
            raise ValueError(
                f"GGUF weights kept packed: a tensor-parallel split of the input features at "
                f"[{start}, {start + length}) does not fall on the format's {self.group}-value "
                "groups; use another tp_size or dequantize_gguf")
        g0, g1 = start // self.group, (start + length) // self.group
        return GGUFCodes(self.codes[:, start : start + length], self.scales[:, g0:g1],
                         self.zeros[:, g0:g1], self.bits, self.group)

    def regroup(self, bits: int, group: int) -> GGUFCodes:
        """The same weights at more bits and/or smaller groups (a fused layer's common format):
        codes are unchanged, each group's scale and zero repeat over its smaller groups."""
        if bits < self.bits or self.group % group:
            raise ValueError(f"cannot hold {self.bits}-bit codes in groups of {self.group} as "
                             f"{bits}-bit codes in groups of {group}")
        times = self.group // group
        return GGUFCodes(self.codes, np.repeat(self.scales, times, axis=1),
                         np.repeat(self.zeros, times, axis=1), bits, group)

    def dequantize(self) -> np.ndarray:
        """float32 [rows, cols] (tests and the dense fallback of a layer with a float shard)."""
        rows, cols = self.shape
        grouped = self.codes.reshape(rows, cols // self.group, self.group).astype(np.float32)
        w = (grouped - self.zeros[..., None]) * self.scales[..., None]
        return w.reshape(rows, cols)


@dataclass(frozen=True)
class BlockFormat:
    block_values: int
    block_bytes: int
    bits: int
    group: int
    decode: Callable[[np.ndarray], Decoded]  # blocks uint8 [n, block_bytes] -> Decoded


def _f16(raw: np.ndarray) -> np.ndarray:
    """[n, 2] little-endian fp16 bytes -> float32 [n, 1]."""
    return np.ascontiguousarray(raw).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray, run: int) -> np.ndarray:
    """Each run of `run` bytes holds 2 * run values: the low nibbles first, then the high."""
    n = qs.shape[0]
    grouped = qs.reshape(n, -1, 1, run) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
    return (grouped & np.uint8(0x0F)).reshape(n, -1)


def _q8_0(b: np.ndarray) -> Decoded:
    d = _f16(b[:, :2])
    codes = b[:, 2:] ^ np.uint8(0x80)  # int8 x -> x + 128 as a byte: flip the sign bit
    return codes, d, np.full_like(d, 128.0), np.zeros_like(d)


def _q4_0(b: np.ndarray) -> Decoded:
    d = _f16(b[:, :2])
    return _nibbles(b[:, 2:], 16), d, np.full_like(d, 8.0), np.zeros_like(d)


def _q4_1(b: np.ndarray) -> Decoded:
    d, m = _f16(b[:, :2]), _f16(b[:, 2:4])
    with np.errstate(divide="ignore", invalid="ignore"):
        zeros = -m / d
    return _nibbles(b[:, 4:], 16), d, zeros, m


def _k_scales(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 12 bytes of 6-bit sub-block scales and mins of Q4_K / Q5_K -> two [n, 8] arrays:
    bytes 0-3 hold scales 0-3 (low 6 bits), 4-7 mins 0-3, and 8-11 the low 4 bits of scales
    and mins 4-7, whose top 2 bits sit in the top bits of bytes 0-3 and 4-7."""
    n = raw.shape[0]
    s = raw.reshape(n, 3, 4)
    lo, mid, hi = s[:, 0], s[:, 1], s[:, 2]
    scales = np.concatenate([lo & 0x3F, (hi & 0x0F) | ((lo >> 2) & 0x30)], axis=1)
    mins = np.concatenate([mid & 0x3F, (hi >> 4) | ((mid >> 2) & 0x30)], axis=1)
    return scales.astype(np.float32), mins.astype(np.float32)


def _k_affine(b: np.ndarray, codes: np.ndarray) -> Decoded:
    d, dmin = _f16(b[:, :2]), _f16(b[:, 2:4])
    sc, mn = _k_scales(b[:, 4:16])
    s, offset = d * sc, dmin * mn
    with np.errstate(divide="ignore", invalid="ignore"):
        zeros = offset / s
    return codes, s, zeros, -offset


def _q4_k(b: np.ndarray) -> Decoded:
    return _k_affine(b, _nibbles(b[:, 16:144], 32))


def _q5_k(b: np.ndarray) -> Decoded:
    n = b.shape[0]
    low = _nibbles(b[:, 48:176], 32).reshape(n, 8, 32)
    high = (b[:, 16:48].reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1
    return _k_affine(b, (low | (high << np.uint8(4))).reshape(n, 256))


def _q6_k(b: np.ndarray) -> Decoded:
    n = b.shape[0]
    low = _nibbles(b[:, :128], 64).reshape(n, 8, 32)
    shifts = np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)
    high = ((b[:, 128:192].reshape(n, 2, 1, 32) >> shifts) & 3).reshape(n, 8, 32)
    codes = (low | (high << np.uint8(4))).reshape(n, 256)
    s = _f16(b[:, 208:210]) * b[:, 192:208].view(np.int8).astype(np.float32)
    return codes, s, np.full_like(s, 32.0), np.zeros_like(s)


# GGML type name -> its block layout; other types (F32, F16, Q5_0, Q2_K, IQ*, ...) stay float.
BLOCK_FORMATS: dict[str, BlockFormat] = {
    "Q8_0": BlockFormat(32, 34, 8, 32, _q8_0),
    "Q4_0": BlockFormat(32, 18, 4, 32, _q4_0),
    "Q4_1": BlockFormat(32, 20, 4, 32, _q4_1),
    "Q4_K": BlockFormat(256, 144, 4, 32, _q4_k),
    "Q5_K": BlockFormat(256, 176, 8, 32, _q5_k),
    "Q6_K": BlockFormat(256, 210, 8, 16, _q6_k),
}


def decode_rows(raw: np.ndarray, type_name: str, cols: int) -> GGUFCodes:
    """GGUF bytes of whole rows (uint8 [rows, row_bytes], as the reader maps them) ->
    GGUFCodes of `cols` values per row."""
    fmt = BLOCK_FORMATS[type_name]
    if cols % fmt.block_values:
        raise ValueError(f"{type_name} rows of {cols} values are not whole blocks")
    blocks = np.asarray(raw, np.uint8).reshape(-1, fmt.block_bytes)
    rows = blocks.shape[0] * fmt.block_values // cols
    codes, scales, zeros, constant = fmt.decode(blocks)
    codes = np.ascontiguousarray(codes).reshape(rows, cols // fmt.group, fmt.group)
    scales = scales.reshape(rows, -1).astype(np.float32)
    zeros = zeros.reshape(rows, -1).astype(np.float32)
    dead = scales == 0
    if dead.any():  # a constant group: codes 1, zero 0, scale the constant (exact)
        codes[dead] = 1
        scales = np.where(dead, constant.reshape(rows, -1), scales)
        zeros = np.where(dead, np.float32(0.0), zeros)
    return GGUFCodes(codes.reshape(rows, cols), scales, zeros, fmt.bits, fmt.group)


def gguf_quant_config(flag: str | None, device: Any, dequantize: bool) -> Any:
    """The quantization of a .gguf file: packed (`GGUFConfig`) by default on CPU and with
    `--quantization gguf`; None (float, as dequantized) with `dequantize_gguf`, on CUDA, or
    when another method's flag applies to the float weights (fp8)."""
    if flag == "gguf" and dequantize:
        raise ValueError("quantization='gguf' keeps GGUF weights packed; dequantize_gguf=True "
                         "asks for float ones: drop one of them")
    if flag not in (None, "gguf") or dequantize:
        return None
    if getattr(device, "type", str(device)) != "cpu":
        if flag == "gguf":
            raise ValueError("quantization='gguf' (packed GGUF weights) runs on CPU only so "
                             "far; on CUDA drop it (GGUF weights are dequantized there)")
        return None
    from sglang.runtime.layers.quantization.gguf import GGUFConfig

    return GGUFConfig()
