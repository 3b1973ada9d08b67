"""The int8 path of `quant_gemm_cpu` (AVX-512 VNNI or AVX2 kernels): its activation quantization
against a torch re-implementation, its product against exact integer arithmetic in fp64 and bit
for bit against an emulation of the kernel's fp32 epilogue (which both ISAs follow, so they agree
exactly), against the float product within the int8 activations' tolerance, and the dispatch with
and without an int8 kernel."""

from __future__ import annotations

import math

import pytest
import torch

import sglang.kernels.cpu.quant_gemm as cpu_gemm
from sglang.kernels import quant_gemm_cpu
from sglang.kernels.cpu import loader
from sglang.kernels.quant_layout import dequantize_weight, pack_quant_weight, unpack_quant_weight

needs_int8 = pytest.mark.skipif(not cpu_gemm.int8_supported(),
                                reason="this CPU (or build) has neither AVX-512 VNNI nor AVX2")


@pytest.fixture(autouse=True)
def _kernel_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "kernel_cache"))
    monkeypatch.delenv(cpu_gemm.INT8_ENV, raising=False)


def make(k: int, n: int, bits: int, group: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 1 << bits, (k, n), generator=g)
    scales = (torch.rand(k // group, n, generator=g) + 0.5) * (2.0 / (1 << bits)) * k**-0.5
    zeros = torch.rand(k // group, n, generator=g) * (1 << bits)
    return pack_quant_weight(q, bits), scales.to(dtype), zeros.to(dtype)


def quantize_ref(x: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per block of `activation_block(group)` k: (xq [M, K] in natural k order, d [M, B])."""
    m, k = x.shape
    block = cpu_gemm.activation_block(group)
    xb = x.float().reshape(m, k // block, block)
    amax = xb.abs().amax(-1)
    # A true division, as the C code's: torch's `127.0 / amax` multiplies by the reciprocal,
    # an ulp off at times, which moves a product sitting near a half (104.50001) onto it.
    inv = torch.where(amax > 0, torch.full_like(amax, 127.0) / amax, torch.zeros_like(amax))
    xq = torch.round(xb * inv[..., None]).clamp(-127, 127)
    return xq.reshape(m, k).to(torch.int8), amax / 127.0


def int8_exact(x, qweight, scales, zeros, bits, group) -> torch.Tensor:
    """What the int8 path computes, in fp64: the quantized activations times the weight."""
    xq, d = quantize_ref(x, group)
    block = cpu_gemm.activation_block(group)
    xdq = xq.double() * d.double().repeat_interleave(block, dim=1)
    return xdq @ dequantize_weight(qweight, scales, zeros, bits, group).double()


def float_exact(x, qweight, scales, zeros, bits, group) -> torch.Tensor:
    return x.double() @ dequantize_weight(qweight, scales, zeros, bits, group).double()


def kernel_order(xq: torch.Tensor, bits: int) -> torch.Tensor:
    """xq in the kernel's order: for 4-bit weights the even k of each 8, then the odd k."""
    if bits == 8:
        return xq
    m, k = xq.shape
    x8 = xq.reshape(m, k // 8, 8)
    return torch.cat([x8[..., 0::2], x8[..., 1::2]], dim=-1).reshape(m, k)


# The quantizer needs no VNNI or AVX2 (only the GEMM does): these run on every CPU.
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group", [16, 32, 128, "K"])
def test_activation_quantization_is_the_reference(bits, group):
    k = 384
    group = k if group == "K" else group
    x = torch.randn(9, k, generator=torch.Generator().manual_seed(1)) * 3
    x[2] = 0.0  # an all-zero row: scale 0, codes 0
    x[3, 5] = 1e4  # an outlier owning its block
    xq, d, xz = cpu_gemm.quantize_activations_cpu(x, bits, group)
    want_q, want_d = quantize_ref(x, group)
    assert torch.equal(xq, kernel_order(want_q, bits))
    assert torch.equal(d, want_d)
    block = cpu_gemm.activation_block(group)
    sums = want_q.double().reshape(9, k // block, block).sum(-1) * want_d.double()
    want_z = sums.reshape(9, k // group, group // block).sum(-1)
    torch.testing.assert_close(xz.double(), want_z, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("bits", "k"), [(8, 36), (8, 24), (4, 24), (8, 40), (4, 40), (4, 56)])
def test_activation_quantization_of_odd_blocks_and_ties(bits, k):
    # One block per row (group = K): 36 takes the scalar loop (not a multiple of 8), 24 and 40
    # the vector loop with an 8-value tail. Halves land exactly on rounding ties of
    # x * (127 / max|x|) (e.g. -72 in a block whose max is 144: -63.5, to -64), where a fused
    # multiply-add in place of the rounded product would round the other way.
    g = torch.Generator().manual_seed(k + bits)
    x = torch.randint(-300, 301, (12, k), generator=g).float() / 2
    x[0] = x[0].clamp(-144.0, 144.0)
    x[0, :2] = torch.tensor([144.0, -72.0])
    x[1] = 0.0
    x[2] = -x[2].abs()  # the block's maximum magnitude on a negative value
    xq, d, xz = cpu_gemm.quantize_activations_cpu(x, bits, k)
    want_q, want_d = quantize_ref(x, k)
    assert xq[0, 1 if bits == 8 else 4] == -64  # 4-bit order: k = 1 is the fifth code of its 8
    assert torch.equal(xq, kernel_order(want_q, bits))
    assert torch.equal(d, want_d)
    want_z = want_q.double().sum(-1, keepdim=True) * want_d.double()
    torch.testing.assert_close(xz.double(), want_z, rtol=1e-6, atol=1e-6)


@needs_int8
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group", [16, 32, 128])
@pytest.mark.parametrize("m", [1, 17, 64, 100])
def test_int8_path_is_exact_integer_arithmetic(bits, group, m):
    # Integer dot products are exact; what remains is fp32 rounding of the scaled block sums.
    k = 256
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    for n in (7, 200, 333):  # 7: only the zero-padded tail; 333: vectors, a partial panel, tail
        qweight, scales, zeros = make(k, n, bits, group, seed=n)
        got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="int8")
        assert got.shape == (m, n) and got.dtype == torch.float32
        want = int8_exact(x, qweight, scales, zeros, bits, group)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=2e-5)


@needs_int8
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group", [16, 32, 128, "K"])
def test_int8_path_within_its_tolerance_of_the_float_product(bits, group):
    # Normal activations, 7 bits of magnitude per block of 32: about 0.5% relative L2 error
    # measured (docs/quant_kernels.md); 1.5% is the bound, the elementwise one is looser.
    k, n, m = 512, 300, 40
    group = k if group == "K" else group
    qweight, scales, zeros = make(k, n, bits, group)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(3))
    got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="int8").double()
    want = float_exact(x, qweight, scales, zeros, bits, group)
    assert (got - want).norm() / want.norm() < 1.5e-2
    assert (got - want).abs().max() < 0.1 * want.abs().max()


@needs_int8
@pytest.mark.parametrize("m", [1, 3, 5, 8, 13, 64])
def test_every_register_tile_gives_the_same_result(monkeypatch, m):
    # Each (rows, vectors, groups per pass) runs different C tile instances and pass orders;
    # all sum the same integers, so they agree within fp32 rounding.
    k, n, bits, group = 256, 16 * 9 + 5, 4, 32
    qweight, scales, zeros = make(k, n, bits, group)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    want = int8_exact(x, qweight, scales, zeros, bits, group)
    for rows in (1, 2, 3, 4, 6, 8):
        for vectors in (1, 2, 4):
            for chunk in (1, 3, k // group):
                monkeypatch.setattr(cpu_gemm, "int8_tile", lambda *a, t=(rows, vectors, chunk): t)
                got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="int8")
                torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=2e-5,
                                           msg=lambda s, t=(rows, vectors, chunk): f"{t}: {s}")


def fma32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """fp32 `a * b + c` rounded once, as vfmadd: the product of two fp32 values is exact in fp64;
    the sum is rounded to odd in fp64 (an inexact, even result moves to its odd neighbour on the
    side of TwoSum's error), which then rounds to fp32 as the exact sum would (53 >= 24 + 2)."""
    p, c = a.double() * b.double(), c.double()
    s = p + c
    bv = s - p
    err = (p - (s - bv)) + (c - bv)
    toward = torch.where(err > 0, math.inf, -math.inf).double()
    s = torch.where((err != 0) & ((s.view(torch.int64) & 1) == 0), torch.nextafter(s, toward), s)
    return s.float()


def int8_emulated(x, qweight, scales, zeros, bits, group) -> torch.Tensor:
    """The int8 kernel's fp32 result bit for bit: the C quantizer's xq, d, xz; exact integer block
    sums; then per output, in group and block order, acc = fma(s * d, float(sum), acc) for each
    block and acc = fma(-(s * z), xz, acc) for each group. Both ISAs' tiles do exactly this."""
    m, k = x.shape
    n = qweight.shape[1]
    block = cpu_gemm.activation_block(group)
    xq, d, xz = cpu_gemm.quantize_activations_cpu(x.float(), bits, group)
    if bits == 4:  # back to natural k order
        x8 = xq.reshape(m, k // 8, 2, 4)
        xq = x8.transpose(-1, -2).reshape(m, k)
    codes = unpack_quant_weight(qweight, bits).double().reshape(k // block, block, n)
    # Integers below 2^53 throughout: exact in fp64.
    sums = torch.einsum("mbj,bjn->mbn", xq.double().reshape(m, k // block, block), codes)
    s, z = scales.float(), zeros.float()
    acc = torch.zeros(m, n)
    for g in range(k // group):
        for b in range(g * group // block, (g + 1) * group // block):
            acc = fma32(s[g] * d[:, b, None], sums[:, b].float(), acc)
        acc = fma32(-(s[g] * z[g]).expand(m, n), xz[:, g, None].expand(m, n), acc)
    return acc


@needs_int8
@pytest.mark.parametrize(("bits", "k", "group"), [
    *((bits, 256, group) for bits in (4, 8) for group in (16, 32, 128, 256)),
    (4, 40, 40), (4, 72, 72), (8, 36, 36), (8, 40, 40)])
def test_int8_path_is_the_emulated_kernel_bit_for_bit(bits, k, group):
    # Every ISA's tiles give exactly int8_emulated's bits. Blocks of 40 and 72 k (group = K)
    # are 5 and 9 words of 4-bit codes: AVX2 sums those in runs of 4 words in int16 and a
    # shorter last run. Rows 1-35 end in partial row tiles; N = 7 (only the zero-padded tail),
    # 33 (2 vectors and a tail), 161 (a partial panel of 4 vectors, and a tail).
    for m in (1, 5, 17, 35):
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(m + k)) * 2
        for n in (7, 33, 161):
            qweight, scales, zeros = make(k, n, bits, group, seed=n)
            got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="int8")
            assert torch.equal(got, int8_emulated(x, qweight, scales, zeros, bits, group)), (m, n)


@needs_int8
@pytest.mark.parametrize("bits", [4, 8])
def test_every_register_tile_gives_the_same_bits(monkeypatch, bits):
    # Tiles and passes change which outputs are in flight, never the order of one output's
    # operations: every choice gives the same bits.
    k, n, group, m = 128, 16 * 9 + 3, 32, 13
    qweight, scales, zeros = make(k, n, bits, group, dtype=torch.float16)  # 8-lane halves too
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(4))
    want = int8_emulated(x, qweight, scales, zeros, bits, group)
    for rows in (1, 3, 4, 8):
        for vectors in (1, 2, 4):
            for chunk in (1, 3, k // group):
                monkeypatch.setattr(cpu_gemm, "int8_tile", lambda *a, t=(rows, vectors, chunk): t)
                got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="int8")
                assert torch.equal(got.float(), want), (rows, vectors, chunk)


@needs_int8
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group", [32, "K"])
def test_int8_sums_at_the_extremes(bits, group):
    # The largest products either ISA forms: activations of +-1 quantize to codes of exactly
    # +-127, against weight codes at the ends of their range (8-bit: 0, whose q ^ 0x80 is -128,
    # and 255) in whole columns, rows and at random. AVX2's int16 pair sums peak here (4-bit:
    # 4 words of 2 * 2 * 15 * 127 = 30480; 8-bit: 2 * 128 * 127 = 32512) and must neither
    # saturate nor wrap.
    k, n, m = 256, 48, 12
    group = k if group == "K" else group
    top = (1 << bits) - 1
    g = torch.Generator().manual_seed(bits)
    ends = torch.tensor([0, 1, top - 1, top, 127 & top, 128 & top])
    q = ends[torch.randint(0, len(ends), (k, n), generator=g)]
    q[:, 0], q[:, 1] = 0, top
    q[:, 2] = torch.where(torch.arange(k) % 2 == 0, 0, top)
    qweight = pack_quant_weight(q, bits)
    scales = torch.rand(k // group, n, generator=g) + 0.5
    zeros = torch.rand(k // group, n, generator=g) * (1 << bits)
    x = torch.where(torch.rand(m, k, generator=g) < 0.5, -1.0, 1.0)
    x[0], x[1] = 1.0, -1.0
    x[2] = torch.where(torch.arange(k) % 2 == 0, -1.0, 1.0)  # against column 2: all -127 * 0
    got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="int8")
    torch.testing.assert_close(got.double(), int8_exact(x, qweight, scales, zeros, bits, group),
                               rtol=1e-5, atol=1e-3)
    assert torch.equal(got, int8_emulated(x, qweight, scales, zeros, bits, group))


@needs_int8
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_int8_path_reads_half_scales(dtype):
    k, n, bits, group = 128, 72, 8, 32
    qweight, scales, zeros = make(k, n, bits, group, dtype=dtype)
    # Scales in x's dtype (the layout's rule).
    x = torch.randn(20, k, generator=torch.Generator().manual_seed(2)).to(dtype)
    got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="int8")
    assert got.dtype == dtype
    got = quant_gemm_cpu(x.float(), qweight, scales.float(), zeros.float(), bits, group,
                         path="int8")  # fp16/bf16 -> fp32 is exact: the same result
    assert torch.equal(quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="int8"),
                       got.to(dtype))
    # Half-precision inputs land exactly on rounding ties of x * 127 / max|x| often, where the
    # reference's product may round the other way: take the codes the C quantizer chose (its
    # rounding is checked against torch on fp32 data above) and check the product exactly.
    xq, d, _ = cpu_gemm.quantize_activations_cpu(x.float(), bits, group)  # 8-bit: natural order
    block = cpu_gemm.activation_block(group)
    xdq = xq.double() * d.double().repeat_interleave(block, dim=1)
    want = xdq @ dequantize_weight(qweight, scales.float(), zeros.float(), bits, group).double()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=2e-5)


@needs_int8
def test_auto_takes_int8_from_its_threshold_only_when_asked(monkeypatch):
    k, n, bits, group = 128, 50, 4, 32
    qweight, scales, zeros = make(k, n, bits, group)
    big = torch.randn(cpu_gemm.INT8_MIN_M, k)
    small = big[: cpu_gemm.INT8_MIN_M - 1]
    # Off by default: the exact fp32 paths at every M.
    assert cpu_gemm.choose_path(big.shape[0]) in ("fused", "mm")
    got = quant_gemm_cpu(big, qweight, scales, zeros, bits, group)
    torch.testing.assert_close(got.double(), float_exact(big, qweight, scales, zeros, bits,
                                                         group), rtol=1e-5, atol=2e-5)
    # Asked for (argument or environment): int8 from INT8_MIN_M rows, fp32 below.
    assert cpu_gemm.choose_path(big.shape[0], int8=True) == "int8"
    assert torch.equal(quant_gemm_cpu(big, qweight, scales, zeros, bits, group, int8=True),
                       quant_gemm_cpu(big, qweight, scales, zeros, bits, group, path="int8"))
    monkeypatch.setenv(cpu_gemm.INT8_ENV, "1")
    assert cpu_gemm.choose_path(big.shape[0]) == "int8"
    assert cpu_gemm.choose_path(big.shape[0], int8=False) in ("fused", "mm")
    exact = quant_gemm_cpu(small, qweight, scales, zeros, bits, group)
    torch.testing.assert_close(exact.double(), float_exact(small, qweight, scales, zeros, bits,
                                                           group), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("m", [3, 40])
def test_without_an_int8_kernel_the_fp32_paths_run(monkeypatch, m):
    # A CPU with neither VNNI nor AVX2 (the feature check patched): "auto" keeps the exact fp32
    # paths, and asking for int8 says why it cannot.
    monkeypatch.setattr(cpu_gemm, "int8_supported", lambda: False)
    k, n, bits, group = 128, 50, 8, 16
    qweight, scales, zeros = make(k, n, bits, group)
    x = torch.randn(m, k)
    assert cpu_gemm.choose_path(m, int8=True) == ("fused" if m <= cpu_gemm.SMALL_M else "mm")
    got = quant_gemm_cpu(x, qweight, scales, zeros, bits, group, int8=True)
    torch.testing.assert_close(got.double(), float_exact(x, qweight, scales, zeros, bits, group),
                               rtol=1e-5, atol=2e-5)
    with pytest.raises(ValueError, match="AVX2 or AVX-512 VNNI"):
        quant_gemm_cpu(x, qweight, scales, zeros, bits, group, path="int8")


def test_unknown_path_is_rejected():
    qweight, scales, zeros = make(64, 16, 4, 32)
    with pytest.raises(ValueError, match="path must be one of"):
        quant_gemm_cpu(torch.zeros(2, 64), qweight, scales, zeros, 4, 32, path="int4")
