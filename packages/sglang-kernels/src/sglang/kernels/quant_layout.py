"""The canonical packed layout of quantized linear weights, shared by `quant_gemm`, its torch
reference and the runtime's checkpoint converters (AWQ, GPTQ) — plain torch, no Triton.

A weight w [K, N] (y = x @ w) of `bits`-bit integers q in [0, 2**bits) is stored as
``qweight`` int32 [K * bits // 32, N]: the ``32 // bits`` values of consecutive k rows share one
int32, lowest bits first (k = 32 // bits * row + i sits at bit ``bits * i``). Groups of
``group_size`` consecutive k rows share one scale and one float zero point per column:
``w[k, n] = (q[k, n] - zeros[k // group_size, n]) * scales[k // group_size, n]``.

The interleaved layout (`interleave_quant_weight`, read by `quant_gemm_interleaved` on the GPU)
holds the same values with one row of words per output feature: int32 [N, K * bits // 32].
K is cut into blocks of ``interleave_block(bits)`` = SLAB * (32 // bits) values; in block b,
word w (of SLAB) holds at bit field j the value of k = b * block + j * SLAB + w. So each bit
field of a [rows, SLAB] tile of words is a contiguous run of SLAB k values: a kernel expands a
tile with one shift and mask per field, without reshaping registers. Scales and zeros keep the
canonical [K // group_size, N].
"""

from __future__ import annotations

import torch

SUPPORTED_BITS = (4, 8)
SUPPORTED_GROUP_SIZES = (16, 32, 64, 128)  # or group_size == K: one group per column
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Words per block row of the interleaved layout: one bit field of them spans 16 k values, the
# smallest group size and tl.dot's smallest K.
SLAB = 16


def pack_factor(bits: int) -> int:
    """Values per int32."""
    check_bits(bits)
    return 32 // bits


def check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"quant_gemm supports bits in {SUPPORTED_BITS}, got {bits}")


def check_group_size(group_size: int, k: int) -> None:
    if group_size != k and group_size not in SUPPORTED_GROUP_SIZES:
        raise ValueError(
            f"quant_gemm supports group_size in {SUPPORTED_GROUP_SIZES} or == K ({k}), "
            f"got {group_size}")
    if k % group_size:
        raise ValueError(f"quant_gemm: K={k} is not a multiple of group_size={group_size}")


def check_activations(op: str, x: torch.Tensor) -> tuple[int, int]:
    """x of a quantized matmul `op`: [M, K] in fp16/bf16/fp32; returns (M, K)."""
    if x.dim() != 2:
        raise ValueError(f"{op}: x must be [M, K], got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: x must be fp16/bf16/fp32, got {x.dtype}")
    return x.shape[0], x.shape[1]


def check_group_terms(op: str, x: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                      groups: tuple[int, int], along_n: bool = False) -> None:
    """Scales and zeros [K // group_size, N] (`along_n`: contiguous along N too), in x's dtype
    or fp16, both of one dtype."""
    for name, t in (("scales", scales), ("zeros", zeros)):
        if tuple(t.shape) != groups or (along_n and t.stride(1) != 1):
            where = " contiguous along N" if along_n else ""
            raise ValueError(f"{op}: {name} must be [K // group_size, N] = {groups}{where}, "
                             f"got {tuple(t.shape)}")
    if scales.dtype not in (x.dtype, torch.float16):
        raise ValueError(f"{op}: scales must be in x's dtype ({x.dtype}) or fp16, "
                         f"got {scales.dtype}")
    if zeros.dtype != scales.dtype:
        raise ValueError(f"{op}: zeros ({zeros.dtype}) must have scales' dtype "
                         f"({scales.dtype})")


def check_quant_args(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
    bits: int, group_size: int,
) -> tuple[int, int, int]:
    """Validate a `quant_gemm` call against the layout; returns (M, N, K)."""
    check_bits(bits)
    m, k = check_activations("quant_gemm", x)
    per_int = 32 // bits
    if k % per_int:
        raise ValueError(f"quant_gemm: K={k} is not a multiple of {per_int} ({bits}-bit values "
                         "per int32)")
    check_group_size(group_size, k)
    if qweight.dtype != torch.int32 or qweight.dim() != 2:
        raise ValueError(f"quant_gemm: qweight must be a 2-D int32 tensor, got {qweight.dtype} "
                         f"of shape {tuple(qweight.shape)}")
    n = qweight.shape[1]
    if qweight.shape[0] != k // per_int:
        raise ValueError(f"quant_gemm: qweight has {qweight.shape[0]} packed rows; K={k} at "
                         f"{bits} bits needs {k // per_int}")
    check_group_terms("quant_gemm", x, scales, zeros, (k // group_size, n))
    return m, n, k


def pack_quant_weight(w_int: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integers [K, N] in [0, 2**bits) into the canonical int32 [K * bits // 32, N]."""
    per_int = pack_factor(bits)
    if w_int.dim() != 2 or w_int.shape[0] % per_int:
        raise ValueError(f"pack_quant_weight: need [K, N] with K a multiple of {per_int}, "
                         f"got {tuple(w_int.shape)}")
    if w_int.is_floating_point():
        raise ValueError("pack_quant_weight: w_int must hold integers")
    if w_int.dtype == torch.uint8:
        return _pack_bytes(w_int, bits)
    values = w_int.to(torch.int64)
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= 1 << bits):
        raise ValueError(f"pack_quant_weight: values must lie in [0, {1 << bits})")
    k, n = values.shape
    shifts = torch.arange(per_int, device=values.device, dtype=torch.int64) * bits
    # int64 sums so that the top value's sign bit does not overflow; wrapped to int32 after.
    packed = (values.view(k // per_int, per_int, n) << shifts[None, :, None]).sum(dim=1)
    packed = torch.where(packed >= 1 << 31, packed - (1 << 32), packed)
    return packed.to(torch.int32)


def _pack_bytes(values: torch.Tensor, bits: int) -> torch.Tensor:
    """`pack_quant_weight` for uint8 codes without int64 temporaries: along each column n the
    bytes of k = 0, 1, 2, ... (4-bit pairs merged into one byte first, low nibble first) are,
    read four at a time, the int32 words (little-endian, as on every CPU we run on). A
    transposed row-major [N, K] input (checkpoints store rows per output feature) needs one
    copy in all, the final transpose."""
    by_column = values.T  # [N, K]
    # Checked on the [N, K] view: contiguous for a transposed checkpoint, ~5x faster to scan.
    if by_column.numel() and int(by_column.max()) >= 1 << bits:
        raise ValueError(f"pack_quant_weight: values must lie in [0, {1 << bits})")
    if bits == 4:
        by_column = by_column[:, 0::2] | (by_column[:, 1::2] << 4)
    words = by_column.contiguous().view(torch.int32)  # [N, K * bits // 32]
    return words.T.contiguous()


def unpack_quant_weight(qweight: torch.Tensor, bits: int) -> torch.Tensor:
    """The inverse of `pack_quant_weight`: int32 [K * bits // 32, N] -> int32 [K, N]."""
    per_int = pack_factor(bits)
    rows, n = qweight.shape
    shifts = torch.arange(per_int, device=qweight.device, dtype=torch.int32) * bits
    # Arithmetic shift of a negative word fills with ones; the mask keeps the low `bits`.
    values = (qweight[:, None, :] >> shifts[None, :, None]) & ((1 << bits) - 1)
    return values.reshape(rows * per_int, n)


def dequantize_weight(
    qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: int, group_size: int
) -> torch.Tensor:
    """The float weight w [K, N] in fp32."""
    q = unpack_quant_weight(qweight, bits).float()
    s = scales.float().repeat_interleave(group_size, dim=0)
    z = zeros.float().repeat_interleave(group_size, dim=0)
    return (q - z) * s


def interleave_block(bits: int) -> int:
    """K values per block of the interleaved layout (128 at 4 bits, 64 at 8)."""
    return SLAB * pack_factor(bits)


def can_interleave(k: int, bits: int, group_size: int) -> bool:
    """Whether K splits into whole interleaved blocks; groups always cover whole bit fields
    (group sizes are multiples of SLAB)."""
    return k % interleave_block(bits) == 0 and group_size % SLAB == 0


def interleave_quant_weight(qweight: torch.Tensor, bits: int) -> torch.Tensor:
    """Canonical int32 [K * bits // 32, N] -> interleaved int32 [N, K * bits // 32]."""
    return interleave_values(unpack_quant_weight(qweight, bits), bits)


def interleave_values(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Integers [K, N] in [0, 2**bits) -> interleaved int32 [N, K * bits // 32] (what
    `interleave_quant_weight` gives for their canonical packing, without packing them first)."""
    per = pack_factor(bits)
    k, n = values.shape
    if k % interleave_block(bits):
        raise ValueError(f"interleave_quant_weight: K={k} is not a multiple of "
                         f"{interleave_block(bits)} at {bits} bits")
    fields = values.T.to(torch.int64).reshape(n, k // (per * SLAB), per, SLAB)
    shifts = (torch.arange(per, device=values.device, dtype=torch.int64) * bits)[:, None]
    words = (fields << shifts).sum(dim=2)  # [N, blocks, SLAB]
    words = torch.where(words >= 1 << 31, words - (1 << 32), words)
    return words.reshape(n, -1).to(torch.int32).contiguous()


def deinterleave_quant_weight(qweight_il: torch.Tensor, bits: int) -> torch.Tensor:
    """The inverse of `interleave_quant_weight`."""
    per = pack_factor(bits)
    n, words = qweight_il.shape
    shifts = (torch.arange(per, device=qweight_il.device, dtype=torch.int32) * bits)[:, None]
    blocks = qweight_il.reshape(n, words // SLAB, 1, SLAB)
    values = (blocks >> shifts) & ((1 << bits) - 1)  # [N, blocks, per, SLAB]: k order
    return pack_quant_weight(values.reshape(n, words * per).T.contiguous(), bits)
