"""GGUF tensor bytes for tests: `gguf.quants.quantize` where gguf-py can quantize the type
(Q8_0, Q4_0, Q4_1), else valid random blocks (K-quants) with finite fp16 d/dmin of a chosen
magnitude and some sub-blocks whose 6-bit (Q4_K/Q5_K) or int8 (Q6_K) scale is zero."""

from __future__ import annotations

import numpy as np

QUANTIZABLE = ("Q8_0", "Q4_0", "Q4_1")
K_QUANTS = ("Q4_K", "Q5_K", "Q6_K")
# Offsets of the fp16 fields in each K-quant block.
_D_OFFSETS = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def _f16_bytes(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).view(np.uint8).reshape(-1, 2)


def random_k_blocks(type_name: str, rows: int, cols: int, rng: np.random.Generator,
                    magnitude: float) -> np.ndarray:
    """uint8 [rows, row_bytes] of random `type_name` blocks; every 7th sub-block has scale 0."""
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]]
    raw = rng.integers(0, 256, (rows * cols // block, size), dtype=np.uint8)
    for offset in _D_OFFSETS[type_name]:
        raw[:, offset : offset + 2] = _f16_bytes(rng.standard_normal(len(raw)) * magnitude)
    if type_name == "Q6_K":
        raw[::7, 192 + 3] = 0  # int8 scale of sub-block 3
    else:
        raw[::7, 4 + 1] &= 0xC0  # low 6 bits of scale 1 (its top bits belong to scale 5)
    return raw.reshape(rows, -1)


def gguf_bytes(type_name: str, weights: np.ndarray, rng: np.random.Generator,
               magnitude: float = 1e-3) -> np.ndarray:
    """`weights` [rows, cols] float32 in `type_name`; K-quants ignore the values (random)."""
    import gguf
    from gguf.quants import quantize

    if type_name in QUANTIZABLE:
        return quantize(weights, gguf.GGMLQuantizationType[type_name])
    return random_k_blocks(type_name, *weights.shape, rng, magnitude)
