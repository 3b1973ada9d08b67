"""The 4/8-bit quantized GEMM against its torch reference, the packing helpers, and the errors."""

from __future__ import annotations

import json

import pytest
import torch
from kernel_cases import DEVICE, DTYPES

from sglang.kernels import QuantGemmConfig, quant_gemm, tuning
from sglang.kernels.quant_matmul import gemm_config, tuning_key
from sglang.kernels.reference import pack_quant_weight, quant_gemm_ref, unpack_quant_weight

TOL = {
    torch.float32: dict(atol=1e-4, rtol=1e-4),
    torch.float16: dict(atol=2e-2, rtol=2e-2),
    torch.bfloat16: dict(atol=8e-2, rtol=4e-2),
}
# Small blocks so the interpreter stays quick and the shapes below cross block edges.
SMALL = QuantGemmConfig(block_m=16, block_n=32, block_k=32)


def make_weight(
    k: int, n: int, bits: int, group_size: int, dtype: torch.dtype, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q [K, N] ints, qweight, scales, zeros) with scales near what a real checkpoint holds:
    w stays O(1 / sqrt(K)) so the outputs are O(1)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 1 << bits, (k, n), generator=g)
    groups = k // group_size
    scales = (torch.rand(groups, n, generator=g) + 0.5) * (2.0 / (1 << bits)) * k**-0.5
    zeros = torch.randint(0, 1 << bits, (groups, n), generator=g).float()
    return (q.to(DEVICE), pack_quant_weight(q, bits).to(DEVICE), scales.to(DEVICE, dtype),
            zeros.to(DEVICE, dtype))


def activations(m: int, k: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g).to(DEVICE, dtype)


def check(m: int, n: int, k: int, bits: int, group_size: int, dtype: torch.dtype,
          config: QuantGemmConfig | None = SMALL) -> None:
    _, qweight, scales, zeros = make_weight(k, n, bits, group_size, dtype)
    x = activations(m, k, dtype)
    got = quant_gemm(x, qweight, scales, zeros, bits, group_size, config=config)
    want = quant_gemm_ref(x, qweight, scales, zeros, bits, group_size)
    assert got.shape == (m, n) and got.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group_size", [16, 32, 64, 128, "K"])
def test_matches_reference_per_group_size(dtype, bits, group_size):
    # K = 256 holds several groups of each size; N = 40 is not a multiple of block_n.
    k = 256
    check(m=3, n=40, k=k, bits=bits, group_size=k if group_size == "K" else group_size,
          dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("m", [1, 3, 16, 17, 64])
def test_matches_reference_per_row_count(dtype, bits, m):
    # One group per column and K = 96 (not a multiple of block_k = 64): the last K tile is
    # partly masked; 17 and 64 rows span several row blocks, with split-K partials summed.
    config = QuantGemmConfig(block_m=16, block_n=16, block_k=64, split_k=2)
    check(m=m, n=24, k=96, bits=bits, group_size=96, dtype=dtype, config=config)


@pytest.mark.gpu
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("m", [1, 7, 16, 64, 256])
def test_default_launch_shapes_at_model_scale_bf16(bits, m):
    # Real launch shapes (warps, stages, split-K from the heuristic or the measured table) on a
    # Llama-sized K; N = 1000 is not a multiple of any block_n.
    check(m=m, n=1000, k=4096, bits=bits, group_size=128, dtype=torch.bfloat16, config=None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_fma_kernel_matches_reference(dtype, bits, m):
    # No tensor cores: rows in one block of 4; K = 96 with 64-deep chunks (the last masked),
    # groups of 32 with 32-deep chunks in the second launch, N = 40 not a multiple of 16.
    for k, group, block_k in ((96, 96, 64), (128, 32, 32)):
        check(m=m, n=40, k=k, bits=bits, group_size=group, dtype=dtype,
              config=QuantGemmConfig(4, 16, block_k, 2, use_dot=False))


def test_fma_config_falls_back_to_the_dot_kernel():
    # More rows than its block, and chunks spanning groups: both still compute the product.
    check(m=6, n=24, k=128, bits=4, group_size=64, dtype=torch.float32,
          config=QuantGemmConfig(2, 16, 64, use_dot=False))
    check(m=1, n=24, k=128, bits=4, group_size=32, dtype=torch.float32,
          config=QuantGemmConfig(1, 16, 64, use_dot=False))


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("split_k", [1, 3, 8])
def test_split_k_small_m(bits, split_k):
    # 8 K chunks over 3 splits leaves an uneven last split; 8 splits one chunk each.
    check(m=2, n=48, k=256, bits=bits, group_size=32, dtype=torch.float32,
          config=QuantGemmConfig(block_m=16, block_n=16, block_k=32, split_k=split_k))


@pytest.mark.parametrize("group_size", [32, 64])
def test_tile_spanning_several_groups(group_size):
    # block_k = 128 holds 2-4 groups: scales and zeros are gathered per k row.
    check(m=5, n=24, k=192, bits=4, group_size=group_size, dtype=torch.float32,
          config=QuantGemmConfig(block_m=16, block_n=16, block_k=128))


@pytest.mark.parametrize("m", [1, 2, 5, 20])
def test_default_launch_shape(m):
    check(m=m, n=40, k=256, bits=4, group_size=128, dtype=torch.float32, config=None)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("m", [1, 5])
def test_group_of_16(bits, m):
    # Groups smaller than any K chunk (Q6_K's sub-blocks): the default launch gathers scales per
    # k row; a 16-deep chunk holds exactly one group.
    check(m=m, n=40, k=128, bits=bits, group_size=16, dtype=torch.float32, config=None)
    check(m=m, n=40, k=128, bits=bits, group_size=16, dtype=torch.float32,
          config=QuantGemmConfig(block_m=16, block_n=16, block_k=16))


def test_fp16_scales_with_fp32_activations():
    _, qweight, scales, zeros = make_weight(128, 32, 4, 64, torch.float16)
    x = activations(4, 128, torch.float32)
    got = quant_gemm(x, qweight, scales, zeros, 4, 64, config=SMALL)
    want = quant_gemm_ref(x, qweight, scales, zeros, 4, 64)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_reference_is_x_at_the_dequantized_weight():
    # Independent of unpacking: build w from the unpacked ints and the group formula directly.
    q, qweight, scales, zeros = make_weight(64, 8, 4, 32, torch.float32)
    w = torch.empty(64, 8, device=DEVICE)
    for k in range(64):
        w[k] = (q[k].float() - zeros[k // 32]) * scales[k // 32]
    x = activations(3, 64, torch.float32)
    torch.testing.assert_close(quant_gemm_ref(x, qweight, scales, zeros, 4, 32), x @ w)


@pytest.mark.parametrize("bits", [4, 8])
def test_pack_unpack_round_trip(bits):
    g = torch.Generator().manual_seed(bits)
    q = torch.randint(0, 1 << bits, (64, 12), generator=g)
    packed = pack_quant_weight(q, bits)
    assert packed.dtype == torch.int32 and packed.shape == (64 * bits // 32, 12)
    assert torch.equal(unpack_quant_weight(packed, bits), q.to(torch.int32))


def test_pack_puts_lowest_k_in_lowest_bits():
    q = torch.arange(8).reshape(8, 1)  # k = i holds value i
    assert pack_quant_weight(q, 4).item() == 0x76543210
    top = torch.tensor([[0], [0], [0], [255]])  # the sign bit of the int32 word
    assert pack_quant_weight(top, 8).item() == -(1 << 24)


def test_pack_errors():
    with pytest.raises(ValueError, match="values must lie"):
        pack_quant_weight(torch.full((8, 2), 16), 4)
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_quant_weight(torch.zeros(6, 2, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match="bits"):
        pack_quant_weight(torch.zeros(8, 2, dtype=torch.int64), 3)


def _call(m=2, k=128, n=16, bits=4, group_size=64, dtype=torch.float32, **overrides):
    _, qweight, scales, zeros = make_weight(k, n, bits, group_size, dtype)
    args = dict(x=activations(m, k, dtype), qweight=qweight, scales=scales, zeros=zeros,
                bits=bits, group_size=group_size)
    args.update(overrides)
    return args


@pytest.mark.parametrize("fn", [quant_gemm, quant_gemm_ref], ids=["kernel", "ref"])
@pytest.mark.parametrize(("overrides", "message"), [
    (dict(bits=3), "bits"),
    (dict(group_size=8), "group_size"),
    (dict(group_size=48), "group_size"),
    (dict(x=torch.zeros(2, 124)), "K=124 is not a multiple of 8"),
    (dict(x=torch.zeros(2, 128, dtype=torch.int32)), "fp16/bf16/fp32"),
    (dict(x=torch.zeros(2, 128, dtype=torch.float64)), "fp16/bf16/fp32"),
    (dict(x=torch.zeros(2, 3, 128)), r"\[M, K\]"),
    (dict(qweight=torch.zeros(16, 16)), "int32"),
    (dict(qweight=torch.zeros(8, 16, dtype=torch.int32)), "packed rows"),
    (dict(scales=torch.zeros(2, 15)), "scales"),
    (dict(zeros=torch.zeros(1, 16)), "zeros"),
    (dict(scales=torch.zeros(2, 16, dtype=torch.bfloat16),
          zeros=torch.zeros(2, 16, dtype=torch.bfloat16)), "scales must be"),
    (dict(zeros=torch.zeros(2, 16, dtype=torch.float16)), "zeros"),
])
def test_errors(fn, overrides, message):
    args = _call()
    for key, value in overrides.items():
        args[key] = value.to(DEVICE) if isinstance(value, torch.Tensor) else value
    with pytest.raises(ValueError, match=message):
        fn(**args)


def test_k_not_a_multiple_of_the_group():
    # group_size == K is allowed for any K holding whole words; 160 is not a multiple of 128.
    args = _call(k=160, group_size=32)
    args["group_size"] = 128
    args["scales"] = args["zeros"] = torch.zeros(1, 16, device=DEVICE)
    with pytest.raises(ValueError, match="not a multiple of group_size"):
        quant_gemm(**args)


def test_bad_launch_shape():
    with pytest.raises(ValueError, match="power of two"):
        quant_gemm(**_call(), config=QuantGemmConfig(block_n=24))
    with pytest.raises(ValueError, match="power of two >= 16"):
        quant_gemm(**_call(), config=QuantGemmConfig(block_m=4))
    with pytest.raises(ValueError, match="block_m <= 4"):
        quant_gemm(**_call(), config=QuantGemmConfig(block_m=8, use_dot=False))


def test_measured_table_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.TUNING_DIR_ENV, str(tmp_path))
    tuning.load_table.cache_clear()
    try:
        measured = {"block_m": 16, "block_n": 16, "block_k": 32, "split_k": 2, "num_warps": 2,
                    "num_stages": 2, "us": 3.5}
        table = {tuning_key(40, 256, 4, 128): {"1": measured}}
        (tmp_path / tuning.table_name("quant_gemm", "cpu")).write_text(json.dumps(table))
        cpu = torch.device("cpu")
        assert gemm_config(2, 40, 256, 4, 128, cpu) == QuantGemmConfig(16, 16, 32, 2, 2, 2)
        assert gemm_config(2, 40, 256, 8, 128, cpu) == QuantGemmConfig.for_shape(2, 40, 256,
                                                                                 128, 4)
    finally:
        tuning.load_table.cache_clear()


def test_small_m_heuristic_splits_k_to_fill_the_gpu():
    config = QuantGemmConfig.for_shape(1, 4096, 4096, 128, sms=132)
    programs = -(-4096 // config.block_n) * config.split_k
    assert config.split_k > 1 and programs >= 2 * 132
    assert not config.use_dot and QuantGemmConfig.for_shape(3, 4096, 4096, 128, 132).use_dot
    # Enough row blocks fill the GPU without splitting K.
    assert QuantGemmConfig.for_shape(4096, 4096, 4096, 128, sms=132).split_k == 1


def test_package_name_is_the_function_after_the_module_is_imported():
    import sglang.kernels
    from sglang.kernels import quant_gemm as by_name
    from sglang.kernels.quant_matmul import QuantGemmConfig as config_cls

    assert callable(by_name) and by_name is sglang.kernels.quant_gemm
    assert config_cls is QuantGemmConfig
