"""The interleaved 4-bit GEMM on the tensor cores, for a few rows (decode batches): CUDA only.

The product is computed transposed, y^T = W x^T, so the dequantized weight tile is the A operand
of the MMA and can stay in registers (Hopper's wgmma reads A from registers and only x^T, a
[16, rows] tile, from shared memory). Triton loads the words of a [BLOCK_N, 16] tile straight
into A's register layout, where a thread's two consecutive registers hold k and k + 1 of one row:
lanes w and w + 1 of the interleaved layout, the same bit field of two adjacent words. One `prmt`
gathers that field's byte from both words and one `lop3` keeps its nibbles under the exponent of
a magic number, giving two 16-bit floats 128 + q (bf16) or 1024 + q (fp16) per pair: one
instruction per weight, exact (odd fields read the words shifted right by 4 once per block).

The MMA then adds P = sum_k x (B + q) per group, and X = sum_k x comes from one more MMA with an
all-ones A over the block; with the group's scale s and zero z, y += s * P - s * (B + z) * X in
fp32. Partials of a split K are summed as in `split_k`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglang.kernels._triton import interpreting, pdl_enter
from sglang.kernels.split_k import gemm_tile, store_or_sum

MMA_BLOCK_M = 16  # rows per program: the smallest MMA tile (x^T is the N operand)
# x dtype -> (two magic 16-bit floats with q's 4 bits free at the bottom, their value)
MAGIC = {torch.bfloat16: (0x43004300, 128.0), torch.float16: (0x64006400, 1024.0)}


def mma_applies(x: torch.Tensor, bits: int, group_size: int) -> bool:
    """Whether the tensor-core path takes this call: 4-bit weights in groups of whole blocks
    (the sum of x is taken per block of 128), bf16/fp16 x on CUDA (the inline PTX does not run
    in Triton's interpreter)."""
    return (bits == 4 and group_size % 128 == 0 and x.dtype in MAGIC and x.is_cuda
            and not interpreting())


@triton.jit
def _field_pairs(words, words_hi, magic, like, J: tl.constexpr):
    """Bit field J (4 bits) of each pair of adjacent words as two 16-bit floats B + q, in
    the dtype of `like` (x)."""
    if J % 2 == 0:
        src = words
    else:
        src = words_hi  # the odd fields' nibbles moved to the bottom of their byte
    # prmt takes byte J // 2 of both words into bytes 0 and 2; lop3 keeps their low nibbles
    # and ORs in the magic: (t & 0x000F000F) | magic.
    if J // 2 == 0:
        asm: tl.constexpr = "{.reg .b32 t; prmt.b32 t, $1, $2, 0x0400; lop3.b32 $0, t, 0x000F000F, $3, 0xEA;}"
    elif J // 2 == 1:
        asm: tl.constexpr = "{.reg .b32 t; prmt.b32 t, $1, $2, 0x0501; lop3.b32 $0, t, 0x000F000F, $3, 0xEA;}"
    elif J // 2 == 2:
        asm: tl.constexpr = "{.reg .b32 t; prmt.b32 t, $1, $2, 0x0602; lop3.b32 $0, t, 0x000F000F, $3, 0xEA;}"
    else:
        asm: tl.constexpr = "{.reg .b32 t; prmt.b32 t, $1, $2, 0x0703; lop3.b32 $0, t, 0x000F000F, $3, 0xEA;}"
    return tl.inline_asm_elementwise(asm, "=r,r,r,r,r", [src, magic], dtype=like.dtype,
                                     is_pure=True, pack=2)


@triton.jit
def _mma_kernel(
    x_ptr, q_ptr, s_ptr, z_ptr, out_ptr, part_ptr, cnt_ptr,
    M, N, K, blocks_per_split,
    stride_xm, stride_qn, stride_sg, stride_zg, stride_os, stride_om,
    GROUP: tl.constexpr, MAGIC_BITS: tl.constexpr,
    BASE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    SUM_IN_KERNEL: tl.constexpr, USE_PDL: tl.constexpr,
):
    pdl_enter(USE_PDL)
    IB: tl.constexpr = 128  # k values per block of 16 words at 4 bits
    OUT: tl.constexpr = x_ptr.dtype.element_ty
    rm, rn, m_ok, n_ok, tile, pid_k = gemm_tile(M, N, BLOCK_M, BLOCK_N)
    rn64 = rn.to(tl.int64)
    lane = tl.arange(0, 16)
    q_rows = q_ptr + rn64[:, None] * stride_qn + lane[None, :]
    x_rows = x_ptr + rm.to(tl.int64)[:, None] * stride_xm
    magic = tl.full((BLOCK_N, 16), MAGIC_BITS, tl.int32)
    ones = tl.full((BLOCK_N, IB), 1.0, OUT)
    b_start = pid_k * blocks_per_split
    b_end = tl.minimum(b_start + blocks_per_split, K // IB)
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for b in range(b_start, b_end):
        words = tl.load(q_rows + b * 16, mask=n_ok[:, None], other=0,
                        eviction_policy="evict_first")
        words_hi = words >> 4
        x_block = tl.load(x_rows + b * IB + tl.arange(0, IB)[None, :], mask=m_ok[:, None],
                          other=0.0)
        xs = tl.dot(ones, tl.trans(x_block))  # [BLOCK_N, BLOCK_M]: each row's sum of x
        p = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        for j in tl.static_range(8):
            xj = tl.load(x_rows + b * IB + j * 16 + lane[None, :], mask=m_ok[:, None], other=0.0)
            p = tl.dot(_field_pairs(words, words_hi, magic, xj, j), tl.trans(xj), p)
        # The block lies in one group (groups are whole blocks).
        g = (b * IB) // GROUP
        s = tl.load(s_ptr + g * stride_sg + rn64, mask=n_ok, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + g * stride_zg + rn64, mask=n_ok, other=0.0).to(tl.float32)
        acc += s[:, None] * (p - (BASE + z)[:, None] * xs)
    store_or_sum(acc, out_ptr, part_ptr, cnt_ptr,
                 rm.to(tl.int64)[None, :] * stride_om + rn64[:, None],
                 n_ok[:, None] & m_ok[None, :], tile, pid_k,
                 tl.num_programs(2), stride_os, SUM_IN_KERNEL)
