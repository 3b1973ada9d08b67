"""The interleaved-layout quantized GEMM (one-row FMA kernel and tl.dot kernel) against the
torch reference on the canonical layout, the layout round trip, and the errors."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import DEVICE, DTYPES
from test_quant_gemm import TOL, activations, make_weight

from sglang.kernels.quant_interleaved import IlConfig, quant_gemm_interleaved
from sglang.kernels.quant_layout import (
    can_interleave,
    deinterleave_quant_weight,
    interleave_block,
    interleave_quant_weight,
    interleave_values,
    unpack_quant_weight,
)
from sglang.kernels.reference import quant_gemm_ref


def check(m: int, n: int, k: int, bits: int, group_size: int, dtype: torch.dtype,
          config: IlConfig | None, integer_zeros: bool = False) -> None:
    _, qweight, scales, zeros = make_weight(k, n, bits, group_size, dtype)
    if not integer_zeros:
        zeros = zeros + 0.25  # a GGUF-style offset: no whole zero points to rely on
    x = activations(m, k, dtype)
    got = quant_gemm_interleaved(x, interleave_quant_weight(qweight, bits), scales, zeros,
                                 bits, group_size, config=config, integer_zeros=integer_zeros)
    want = quant_gemm_ref(x, qweight, scales, zeros, bits, group_size)
    assert got.shape == (m, n) and got.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), **TOL[dtype])


@pytest.mark.parametrize("bits", [4, 8])
def test_layout_round_trip_and_field_order(bits):
    k, n = 2 * interleave_block(bits), 5
    q = torch.randint(0, 1 << bits, (k, n))
    _, qweight, _, _ = make_weight(k, n, bits, k, torch.float32)
    il = interleave_quant_weight(qweight, bits)
    assert il.shape == (n, k * bits // 32)
    assert torch.equal(deinterleave_quant_weight(il, bits), qweight)
    # Straight from the integers (the runtime's load path) gives the same words.
    assert torch.equal(interleave_values(unpack_quant_weight(qweight, bits), bits), il)
    # Bit field j of word w in block b holds k = b * block + j * 16 + w.
    values = unpack_quant_weight(qweight, bits)
    b, j, w = 1, (32 // bits) - 1, 3
    word = int(il[2, b * 16 + w]) & 0xFFFFFFFF
    assert (word >> (bits * j)) & ((1 << bits) - 1) == int(values[b * interleave_block(bits)
                                                                  + j * 16 + w, 2])
    del q


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group_size", [16, 32, 64, 128, "K"])
@pytest.mark.parametrize("prefetch", [False, True])
def test_one_row_kernel_per_group_size(dtype, bits, group_size, prefetch):
    # K spans three blocks, so split-K 2 gives splits of two and one (the prefetch past a
    # split's last block is masked); N = 40 is not a multiple of block_n.
    k = 384 if bits == 4 else 192
    group = k if group_size == "K" else group_size
    if k % group:
        group = 64
    check(1, 40, k, bits, group, dtype,
          IlConfig(block_m=1, block_n=16, split_k=2, prefetch=prefetch))


@pytest.mark.parametrize("m", [1, 5])
def test_split_sum_in_kernel_equals_second_launch(m, monkeypatch):
    # The last program of a tile adds the partials in split order, as the second launch
    # does: the same bits; the counters are left zero for the next launch.
    from sglang.kernels import quant_interleaved

    _, qweight, scales, zeros = make_weight(512, 40, 4, 64, torch.float32)
    il = interleave_quant_weight(qweight, 4)
    config = IlConfig(block_m=1 if m == 1 else 16, block_n=16, split_k=4)
    x = activations(m, 512, torch.float32)
    fused = quant_gemm_interleaved(x, il, scales, zeros, 4, 64, config=config)
    counters = quant_interleaved.split_counters(x.device, 1)
    assert counters is not None and not counters.any()
    monkeypatch.setattr(quant_interleaved, "split_counters", lambda device, tiles: None)
    two_launches = quant_interleaved.quant_gemm_interleaved(x, il, scales, zeros, 4, 64,
                                                            config=config)
    assert torch.equal(fused, two_launches)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("m", [1, 2, 5, 17])
def test_dot_kernel_per_row_count(dtype, bits, m):
    # The tl.dot kernel for every row count (block_m=16 forces it at one row too), rows
    # spanning two row blocks at 17, split-K partials summed.
    check(m, 24, 256, bits, 64, dtype, IlConfig(block_m=16, block_n=16, split_k=2))


@pytest.mark.parametrize("m", [1, 3])
def test_default_launch_shape(m):
    check(m, 48, 512, 4, 128, torch.float32, None)


def test_can_interleave():
    assert can_interleave(4096, 4, 128) and can_interleave(14336, 4, 128)
    assert not can_interleave(96, 4, 96)  # K not a whole number of 128-value blocks
    assert can_interleave(64, 8, 64) and not can_interleave(96, 8, 32)


def test_errors_name_the_problem():
    _, qweight, scales, zeros = make_weight(256, 8, 4, 64, torch.float32)
    il = interleave_quant_weight(qweight, 4)
    x = activations(1, 256, torch.float32)
    with pytest.raises(ValueError, match="K=128 values per row, x has K=256"):
        quant_gemm_interleaved(x, il[:, :16].contiguous(), scales, zeros, 4, 64)
    with pytest.raises(ValueError, match="scales must be"):
        quant_gemm_interleaved(x, il, scales[:1], zeros, 4, 64)
    with pytest.raises(ValueError, match="scales must be in x's dtype"):
        quant_gemm_interleaved(x, il, scales.bfloat16(), zeros.bfloat16(), 4, 64)
    with pytest.raises(ValueError, match="zeros .* must have scales' dtype"):
        quant_gemm_interleaved(x, il, scales, zeros.half(), 4, 64)
    with pytest.raises(ValueError, match="not a multiple of 128"):
        interleave_quant_weight(qweight[:12], 4)
    assert DEVICE is not None


@pytest.mark.parametrize("bits", [4, 8])
def test_dequantize_and_many_rows(bits, monkeypatch):
    from sglang.kernels import quant_interleaved
    from sglang.kernels.quant_interleaved import dequantize_interleaved
    from sglang.kernels.quant_layout import dequantize_weight

    _, qweight, scales, zeros = make_weight(256, 40, bits, 64, torch.float32)
    il = interleave_quant_weight(qweight, bits)
    dense = dequantize_interleaved(il, scales, zeros, bits, 64, torch.float32)
    torch.testing.assert_close(dense, dequantize_weight(qweight, scales, zeros, bits, 64).T)
    # The dequant launch goes through that dense weight; the heuristic picks it from
    # DEQUANT_MIN_M rows.
    check(6, 40, 256, bits, 64, torch.float32, IlConfig(dequant=True))
    monkeypatch.setattr(quant_interleaved, "DEQUANT_MIN_M", 4)
    assert IlConfig.for_shape(6, 40, 256, bits, 132).dequant
    assert not IlConfig.for_shape(3, 40, 256, bits, 132).dequant


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", [1, 3, 16, 21])
@pytest.mark.parametrize("group_size", [128, 256, "K"])
@pytest.mark.parametrize("split_k", [1, 3])
@pytest.mark.parametrize("integer_zeros", [False, True], ids=["float-zeros", "integer-zeros"])
@pytest.mark.gpu
def test_tensor_core_kernel(dtype, m, group_size, split_k, integer_zeros):
    # The inline-PTX dequantization (CUDA only): row blocks past 16 rows, N = 200 not a
    # multiple of block_n, groups of one, two and all blocks, split K over 5 blocks; zero
    # points subtracted from the weights (whole ones) or corrected per block.
    from sglang.kernels.quant_interleaved_mma import mma_applies

    k = 640
    group = k if group_size == "K" else group_size
    if k % group:
        group = 128
    x = activations(m, k, dtype)
    assert mma_applies(x, 4, group)
    check(m, 200, k, 4, group, dtype, IlConfig(block_m=16, block_n=64, split_k=split_k, mma=True),
          integer_zeros)


@pytest.mark.parametrize("block_n,warps", [(32, 1), (64, 1), (64, 2), (128, 2)])
@pytest.mark.parametrize("m", [1, 5])
@pytest.mark.gpu
def test_tensor_core_kernel_on_one_or_two_warps(block_n, warps, m):
    # Fewer than 4 warps: Triton's mma.sync path instead of wgmma.
    check(m, 200, 640, 4, 128, torch.bfloat16,
          IlConfig(block_m=16, block_n=block_n, split_k=2, num_warps=warps, mma=True), True)


def test_tensor_core_config_falls_back_where_it_does_not_apply():
    # Interpreter, 8 bits or groups smaller than a block: the mma launch runs the dot kernel.
    from sglang.kernels.quant_interleaved_mma import mma_applies

    x = activations(2, 256, torch.float32)
    assert not mma_applies(x, 4, 128) and not mma_applies(x.half(), 4, 64)
    assert not mma_applies(x.half(), 8, 128)
    config = IlConfig(block_m=16, block_n=16, split_k=2, mma=True)
    check(2, 40, 256, 4, 128, torch.float32, config)
    check(1, 40, 256, 8, 64, torch.float32, config)
    check(1, 40, 256, 4, 128, torch.float32, config, integer_zeros=True)
