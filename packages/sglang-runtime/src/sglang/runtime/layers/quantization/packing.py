"""Bit packing of quantized values in int32 words, shared by the checkpoint formats.

Every format stores `32 // bits` small unsigned integers per int32, lowest bits first; they
differ in which axis the words run along and (AWQ) in the order of the values inside a word.
"""

from __future__ import annotations

import torch

SUPPORTED_BITS = (4, 8)


def unpack_int32(packed: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """[.., W, ..] int32 words -> [.., W * 32 // bits, ..] values along `dim`: the value at
    position `32 // bits * w + i` of `dim` sits at bit `bits * i` of word w."""
    per = 32 // bits
    shifts = torch.arange(0, 32, bits, dtype=torch.int32, device=packed.device)
    moved = packed.movedim(dim, -1)
    # An arithmetic right shift of a negative word fills with ones; the mask drops them.
    values = (moved.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    values = values.reshape(*moved.shape[:-1], moved.shape[-1] * per)
    return values.movedim(-1, dim).contiguous()


def pack_int32(values: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """The inverse of `unpack_int32`: values in [0, 2**bits) -> int32 words along `dim`."""
    per = 32 // bits
    moved = values.movedim(dim, -1).to(torch.int64)
    if moved.shape[-1] % per:
        raise ValueError(f"{moved.shape[-1]} values do not fill whole {per}-value int32 words")
    grouped = moved.reshape(*moved.shape[:-1], moved.shape[-1] // per, per)
    shifts = torch.arange(0, 32, bits, dtype=torch.int64, device=values.device)
    words = (grouped << shifts).sum(-1)
    # Wrap into int32's range: the top value may set the sign bit.
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    return words.movedim(-1, dim).contiguous()
