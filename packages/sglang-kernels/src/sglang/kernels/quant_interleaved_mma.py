"""The interleaved 4-bit GEMM on the tensor cores, for a few rows (decode batches): CUDA only.

The product is computed transposed, y^T = W x^T, so the dequantized weight tile is the A operand
of the MMA and can stay in registers (Hopper's wgmma reads A from registers and only x^T, a
[16, rows] tile, from shared memory). Triton loads the words of a [BLOCK_N, 16] tile straight
into A's register layout, where a thread's two consecutive registers hold k and k + 1 of one row:
lanes w and w + 1 of the interleaved layout, the same bit field of two adjacent words. One `prmt`
gathers that field's byte from both words and one `lop3` keeps its nibbles under the exponent of
a magic number, giving two 16-bit floats 128 + q (bf16) or 1024 + q (fp16) per pair: one
instruction per weight, exact (odd fields read the words shifted right by 4 once per block).

Zero points that are whole numbers (AWQ's and GPTQ's, `integer_zeros`) are taken off in the same
asm: one `sub` of the pair (B + z, B + z) leaves q - z exactly, the MMA adds P = sum_k x (q - z)
per block and y += s * P in fp32. Other zero points keep B: P = sum_k x (B + q), X = sum_k x comes
from one more MMA with an all-ones A over the block, and y += s * P - s * (B + z) * X.

The group's scale and zero are requested a block ahead: they feed no MMA, so Triton's pipeliner
leaves them in the loop body, where their load latency stalled every block (Nsight Compute: about
40% of the warps' cycles waiting on them at one row). Partials of a split K are summed as in
`split_k`.
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
    # prmt takes byte J // 2 of both words into bytes 0 and 2 (selector 0x0400 + 0x0101 * byte;
    # a constant operand, which ptxas folds into the instruction); lop3 keeps their low nibbles
    # and ORs in the magic: (t & 0x000F000F) | magic. Odd fields read the words shifted by 4.
    src = words if J % 2 == 0 else words_hi
    select = tl.full(words.shape, 0x0400 + 0x0101 * (J // 2), tl.int32)
    return tl.inline_asm_elementwise(
        "{.reg .b32 t; prmt.b32 t, $1, $2, $5; lop3.b32 $0, t, 0x000F000F, $3, 0xEA;}",
        "=r,r,r,r,r,r,r", [src, magic, select], dtype=like.dtype, is_pure=True, pack=2)


@triton.jit
def _field_pairs_less_zero(words, words_hi, magic, zz, like, J: tl.constexpr):
    """`_field_pairs` minus the pair (B + z, B + z) in `zz`: q - z, exact for whole z."""
    src = words if J % 2 == 0 else words_hi
    select = tl.full(words.shape, 0x0400 + 0x0101 * (J // 2), tl.int32)
    if like.dtype == tl.bfloat16:
        asm: tl.constexpr = "{.reg .b32 t; prmt.b32 t, $1, $2, $7; lop3.b32 t, t, 0x000F000F, $3, 0xEA; sub.rn.bf16x2 $0, t, $5;}"
    else:
        asm: tl.constexpr = "{.reg .b32 t; prmt.b32 t, $1, $2, $7; lop3.b32 t, t, 0x000F000F, $3, 0xEA; sub.rn.f16x2 $0, t, $5;}"
    return tl.inline_asm_elementwise(asm, "=r,r,r,r,r,r,r,r,r", [src, magic, zz, select],
                                     dtype=like.dtype, is_pure=True, pack=2)


@triton.jit
def _mma_kernel(
    x_ptr, q_ptr, s_ptr, z_ptr, out_ptr, part_ptr, cnt_ptr,
    M, N, K, blocks_per_split,
    stride_xm, stride_qn, stride_sg, stride_zg, stride_os, stride_om,
    GROUP: tl.constexpr, MAGIC_BITS: tl.constexpr,
    BASE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    INTEGER_ZEROS: tl.constexpr, SUM_IN_KERNEL: tl.constexpr, USE_PDL: tl.constexpr,
):
    IB: tl.constexpr = 128  # k values per block of 16 words at 4 bits
    OUT: tl.constexpr = x_ptr.dtype.element_ty
    rm, rn, m_ok, n_ok, tile, pid_k = gemm_tile(M, N, BLOCK_M, BLOCK_N)
    rn64 = rn.to(tl.int64)
    lane = tl.arange(0, 16)
    q_rows = q_ptr + rn64[:, None] * stride_qn + lane[None, :]
    x_rows = x_ptr + rm.to(tl.int64)[:, None] * stride_xm
    magic = tl.full((BLOCK_N, 16), MAGIC_BITS, tl.int32)
    b_start = pid_k * blocks_per_split
    b_end = tl.minimum(b_start + blocks_per_split, K // IB)
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    # Scales and zeros are no kernel's output: requested before waiting for the previous one.
    g = (b_start * IB) // GROUP
    s_next = tl.load(s_ptr + g * stride_sg + rn64, mask=n_ok, other=0.0)
    z_next = tl.load(z_ptr + g * stride_zg + rn64, mask=n_ok, other=0.0)
    pdl_enter(USE_PDL)
    for b in range(b_start, b_end):
        s = s_next.to(tl.float32)
        z = z_next.to(tl.float32)
        # The block lies in one group (groups are whole blocks); the next one's terms now.
        g = ((b + 1) * IB) // GROUP
        ahead = n_ok & ((rn * 0 + b + 1) < b_end)
        s_next = tl.load(s_ptr + g * stride_sg + rn64, mask=ahead, other=0.0)
        z_next = tl.load(z_ptr + g * stride_zg + rn64, mask=ahead, other=0.0)
        words = tl.load(q_rows + b * 16, mask=n_ok[:, None], other=0,
                        eviction_policy="evict_first")
        words_hi = words >> 4
        p = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        if INTEGER_ZEROS:
            # (B + z) as a pair of 16-bit floats per row, for the asm's sub.
            zb = (BASE + z).to(OUT).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
            zz = (zb | (zb << 16))[:, None] + tl.zeros((BLOCK_N, 16), tl.int32)
            for j in tl.static_range(8):
                xj = tl.load(x_rows + b * IB + j * 16 + lane[None, :], mask=m_ok[:, None],
                             other=0.0)
                w = _field_pairs_less_zero(words, words_hi, magic, zz, xj, j)
                p = tl.dot(w, tl.trans(xj), p)
            acc += s[:, None] * p
        else:
            x_block = tl.load(x_rows + b * IB + tl.arange(0, IB)[None, :], mask=m_ok[:, None],
                              other=0.0)
            # [BLOCK_N, BLOCK_M]: each row's sum of x
            xs = tl.dot(tl.full((BLOCK_N, IB), 1.0, OUT), tl.trans(x_block))
            for j in tl.static_range(8):
                xj = tl.load(x_rows + b * IB + j * 16 + lane[None, :], mask=m_ok[:, None],
                             other=0.0)
                p = tl.dot(_field_pairs(words, words_hi, magic, xj, j), tl.trans(xj), p)
            acc += s[:, None] * (p - (BASE + z)[:, None] * xs)
    store_or_sum(acc, out_ptr, part_ptr, cnt_ptr,
                 rm.to(tl.int64)[None, :] * stride_om + rn64[:, None],
                 n_ok[:, None] & m_ok[None, :], tile, pid_k,
                 tl.num_programs(2), stride_os, SUM_IN_KERNEL)
