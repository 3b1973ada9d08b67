"""Micro-benchmarks of the sglang-kernels attention kernels on a CUDA GPU (Llama-3-8B heads).

* decode attention, batch 64 x 4096 context, 32 query / 8 KV heads of dim 128, bf16: achieved
  bandwidth of the K/V bytes read, against the device's copy bandwidth (bytes read + written
  per second by ``dst.copy_(src)``: the usual memory ceiling), for slots laid out contiguously
  per request and scattered at random over the pool, and over a sweep of ``num_kv_splits``;
* extend attention against ``torch.nn.functional.scaled_dot_product_attention`` on equal causal
  work: a plain prefill (``is_causal``), and new tokens over a cached prefix (SDPA with a
  lower-right causal mask). Rates are attention FLOP/s counting only visible (query, key) pairs.

    python benchmarks/kernel_micro.py [--copy-gbps 3000]

``benchmarks/gpu_suite.py`` imports ``bench_decode_attention`` and ``bench_extend_attention``;
both take a device string, return a flat dict of numbers and raise without CUDA.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128  # Llama-3-8B
DTYPE = torch.bfloat16
DECODE_BATCH, DECODE_CONTEXT = 64, 4096
SPLIT_SWEEP = (1, 2, 4, 8, 16, 32)
# (name, requests, cached prefix, new tokens per request)
EXTEND_CASES = (("prefill", 4, 0, 2048), ("prefix", 4, 1536, 512))


def _cuda(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        raise RuntimeError(
            f"kernel micro-benchmarks need a CUDA device (got {str(device)!r}, "
            f"torch.cuda.is_available()={torch.cuda.is_available()})"
        )
    return dev


def _time_ms(fn: Callable[[], Any], iters: int = 20, reps: int = 5) -> float:
    """Median over `reps` of the mean time of `iters` back-to-back calls, by CUDA events."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) / iters)
    return statistics.median(samples)


def copy_bandwidth_gbps(device: torch.device, mib: int = 1024) -> float:
    """Device-to-device copy: (bytes read + bytes written) per second, in GB/s."""
    src = torch.ones(mib * 2**20 // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    ms = _time_ms(lambda: dst.copy_(src), iters=10)
    nbytes = 2 * src.numel() * src.element_size()
    return nbytes / ms / 1e6


def _pool(requests: int, context: int, device: torch.device, scattered: bool, seed: int = 0):
    """K/V pool with exactly the requests' slots and a req_to_token table over them."""
    g = torch.Generator(device=device).manual_seed(seed)
    slots = requests * context
    k = torch.randn(slots, KV_HEADS, HEAD_DIM, dtype=DTYPE, device=device, generator=g)
    v = torch.randn(slots, KV_HEADS, HEAD_DIM, dtype=DTYPE, device=device, generator=g)
    order = (torch.randperm(slots, device=device, generator=g) if scattered
             else torch.arange(slots, device=device))
    table = order.view(requests, context).to(torch.int32)
    return k, v, table


def bench_decode_attention(device: str | torch.device, copy_gbps: float | None = None) -> dict:
    """Decode attention at batch 64 x 4096 context; `copy_gbps` defaults to a measured copy."""
    import sglang.kernels as K

    dev = _cuda(device)
    copy = copy_gbps if copy_gbps is not None else copy_bandwidth_gbps(dev)
    bs, ctx = DECODE_BATCH, DECODE_CONTEXT
    q = torch.randn(bs, HEADS, HEAD_DIM, dtype=DTYPE, device=dev)
    out = torch.empty_like(q)
    rows = torch.arange(bs, device=dev)
    seq = torch.full((bs,), ctx, dtype=torch.int64, device=dev)
    kv_bytes = 2 * bs * ctx * KV_HEADS * HEAD_DIM * DTYPE.itemsize
    default_splits = K.default_num_kv_splits(bs, KV_HEADS, dev)
    ws = K.DecodeWorkspace.allocate(bs, HEADS, HEAD_DIM, max(SPLIT_SWEEP), dev)
    result: dict[str, Any] = {
        "batch": bs, "context": ctx, "heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM,
        "kv_bytes": kv_bytes, "copy_GBps": copy, "num_kv_splits": default_splits,
    }
    for layout in ("contiguous", "scattered"):
        k, v, table = _pool(bs, ctx, dev, scattered=layout == "scattered")

        def run(splits: int, k=k, v=v, table=table) -> None:
            K.decode_attention(q, k, v, table, rows, seq, out, sm_scale=HEAD_DIM**-0.5,
                               num_kv_splits=splits, workspace=ws)

        ms = _time_ms(lambda: run(default_splits))
        result[f"{layout}_ms"] = ms
        result[f"{layout}_GBps"] = kv_bytes / ms / 1e6
        result[f"{layout}_of_copy"] = kv_bytes / ms / 1e6 / copy
        if layout == "contiguous":
            from sglang.kernels.reference import decode_attention_ref

            want = decode_attention_ref(q, k, v, table, rows, seq, sm_scale=HEAD_DIM**-0.5)
            run(default_splits)
            result["max_abs_diff_vs_ref"] = (out.float() - want.float()).abs().max().item()
            for splits in SPLIT_SWEEP:
                result[f"ms_splits_{splits}"] = _time_ms(lambda s=splits: run(s), iters=10, reps=3)
        del k, v, table
    return result


def _tune_decode_batch(dev: torch.device, bs: int, copy: float) -> dict[str, Any]:
    """The fastest decode launch at batch `bs` x `DECODE_CONTEXT` keys (default splits)."""
    import sglang.kernels as K
    from sglang.kernels.attention.decode_launch import DecodeLaunch

    k, v, table = _pool(bs, DECODE_CONTEXT, dev, scattered=False)
    q = torch.randn(bs, HEADS, HEAD_DIM, dtype=DTYPE, device=dev)
    out = torch.empty_like(q)
    rows = torch.arange(bs, device=dev)
    seq = torch.full((bs,), DECODE_CONTEXT, dtype=torch.int64, device=dev)
    splits = K.default_num_kv_splits(bs, KV_HEADS, dev)
    ws = K.DecodeWorkspace.allocate(bs, HEADS, HEAD_DIM, splits, dev)
    kv_bytes = 2 * bs * DECODE_CONTEXT * KV_HEADS * HEAD_DIM * DTYPE.itemsize

    def run(launch: DecodeLaunch) -> None:
        K.decode_attention(q, k, v, table, rows, seq, out, sm_scale=HEAD_DIM**-0.5,
                           num_kv_splits=splits, workspace=ws, launch=launch)

    timed = []
    for bn, warps, stages in itertools.product((32, 64, 128), (2, 4, 8), (1, 2, 3, 4)):
        launch = DecodeLaunch(bn, warps, stages)
        try:
            timed.append((_time_ms(lambda la=launch: run(la), iters=10, reps=3), launch))
        except Exception:  # noqa: BLE001 - past shared memory or registers: skip
            continue
    ms, best = min(timed, key=lambda t: t[0])
    default_ms = next(t for t, la in timed if la == DecodeLaunch())
    return {"launch": asdict(best), "ms": ms, "of_copy": kv_bytes / ms / 1e6 / copy,
            "default_ms": default_ms, "num_kv_splits": splits}


def tune_decode(device: str | torch.device, out: Path, batches: tuple[int, ...] = (1, 8, 64)
                ) -> dict[str, Any]:
    """Time every decode launch shape (keys per block x warps x stages) at each batch size and
    `DECODE_CONTEXT` keys, splits by the default policy, and write the fastest per batch into
    `out`'s `decode_attention_<device>.json` (the table `decode_attention` reads)."""
    import json

    from sglang.kernels import tuning
    from sglang.kernels.attention.decode_launch import TUNING_KERNEL, tuning_key

    dev = _cuda(device)
    copy = copy_bandwidth_gbps(dev)
    out.mkdir(parents=True, exist_ok=True)
    path = out / tuning.table_name(TUNING_KERNEL, tuning.device_key(dev))
    table = json.loads(path.read_text()) if path.is_file() else {}
    buckets = table.setdefault(tuning_key(HEADS, KV_HEADS, HEAD_DIM, DTYPE), {})
    for bs in batches:
        buckets[str(bs)] = row = _tune_decode_batch(dev, bs, copy)
        print(f"decode bs={bs}: {json.dumps(row)}", flush=True)
        # Written after each batch size, so a sweep cut short keeps what it measured.
        path.write_text(json.dumps(table, indent=1, sort_keys=True))
    return buckets


def _causal_flops(requests: int, prefix: int, new: int) -> float:
    # Query at absolute position p sees p + 1 keys: 2 matmuls x 2 FLOP per multiply-add.
    visible = requests * (new * prefix + new * (new + 1) // 2)
    return 4.0 * visible * HEADS * HEAD_DIM


def _extend_case(dev: torch.device, requests: int, prefix: int, new: int) -> dict[str, float]:
    import torch.nn.functional as F
    from torch.nn.attention.bias import causal_lower_right

    import sglang.kernels as K

    seq = prefix + new
    k, v, table = _pool(requests, seq, dev, scattered=False, seed=1)
    q = torch.randn(requests * new, HEADS, HEAD_DIM, dtype=DTYPE, device=dev)
    out = torch.empty_like(q)
    ext = torch.full((requests,), new, dtype=torch.int64, device=dev)
    pre = torch.full((requests,), prefix, dtype=torch.int64, device=dev)
    start = torch.arange(requests, device=dev) * new
    rows = torch.arange(requests, device=dev)
    triton_ms = _time_ms(lambda: K.extend_attention(
        q, k, v, table, rows, pre, ext, start, out, sm_scale=HEAD_DIM**-0.5, max_extend_len=new))
    got_triton = out.clone()

    # What the runtime runs in bf16: varlen attention (our Triton flash kernel where this
    # device's table says it beats torch's FlashAttention-2, else torch's), after gathering each
    # request's keys out of the pool when a prefix is cached (timed: the runtime does it per
    # layer); a plain prefill hands over the new tokens' K/V as they are.
    seqs = torch.full((requests,), seq, dtype=torch.int64, device=dev)
    cu_q, cu_k = K.cumulative_lengths(ext), K.cumulative_lengths(seqs)
    slots = K.gather_kv_slots(table, rows, seqs, cu_k, requests * seq) if prefix else None
    new_k, new_v = k[-requests * new:], v[-requests * new:]

    def gathered() -> tuple[torch.Tensor, torch.Tensor]:
        return (k.index_select(0, slots), v.index_select(0, slots)) if slots is not None \
            else (new_k, new_v)

    def flash_call() -> torch.Tensor:
        return K.varlen_extend_attention(q, *gathered(), cu_q, cu_k, new, seq,
                                         sm_scale=HEAD_DIM**-0.5)

    flash_ms = _time_ms(flash_call) if K.flash_varlen_supported(k, q.dtype) else float("nan")
    # The two kernels flash_call chooses between, each on its own (K/V gather included).
    kernels_ms = {}
    if flash_ms == flash_ms:
        kernels_ms["torch_flash_ms"] = _time_ms(lambda: torch.ops.aten._flash_attention_forward(
            q, *gathered(), cu_q, cu_k, new, seq, 0.0, True, False, scale=HEAD_DIM**-0.5))
        kernels_ms["triton_flash_ms"] = _time_ms(lambda: K.flash_attention(
            q, *gathered(), cu_q, cu_k, new, sm_scale=HEAD_DIM**-0.5))

    # SDPA on the same work, K/V already contiguous per request and expanded to every query
    # head (so the flash kernel applies); preparing them is not timed.
    group = HEADS // KV_HEADS
    q_s = q.view(requests, new, HEADS, HEAD_DIM).transpose(1, 2).contiguous()

    def expand(x: torch.Tensor) -> torch.Tensor:
        x = x.view(requests, seq, KV_HEADS, HEAD_DIM).transpose(1, 2)
        return x.repeat_interleave(group, dim=1).contiguous()

    k_s, v_s = expand(k), expand(v)
    # A cached prefix puts the diagonal of the causal mask at the bottom right.
    mask = causal_lower_right(new, seq) if prefix else None

    def sdpa_call() -> torch.Tensor:
        return F.scaled_dot_product_attention(q_s, k_s, v_s, attn_mask=mask, is_causal=not prefix)

    sdpa = _time_ms(sdpa_call)
    want = sdpa_call()

    def diff(o: torch.Tensor) -> float:
        got = o.view(requests, new, HEADS, HEAD_DIM).transpose(1, 2)
        return (got.float() - want.float()).abs().max().item()

    flops = _causal_flops(requests, prefix, new)
    use_flash = flash_ms == flash_ms  # not NaN: the runtime's path for this dtype
    ours = flash_ms if use_flash else triton_ms
    path = ("triton_flash" if K.flash_measured_faster(q, KV_HEADS) else "torch_flash") \
        if use_flash else "triton_extend"
    row = {"ours_path": path, "ours_ms": ours,
           "sdpa_ms": sdpa, "ours_TFLOPs": flops / ours / 1e9, "sdpa_TFLOPs": flops / sdpa / 1e9,
           "ours_over_sdpa_time": ours / sdpa, "triton_ms": triton_ms,
           "triton_over_sdpa_time": triton_ms / sdpa, "max_abs_diff_vs_sdpa": diff(got_triton)}
    if use_flash:
        row.update(flash_ms=flash_ms, flash_over_sdpa_time=flash_ms / sdpa,
                   flash_max_abs_diff_vs_sdpa=diff(flash_call()), **kernels_ms)
    return row


def bench_extend_attention(device: str | torch.device) -> dict:
    """Extend attention against SDPA: a plain causal prefill and new tokens over a prefix."""
    dev = _cuda(device)
    result: dict[str, Any] = {"heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM}
    for name, requests, prefix, new in EXTEND_CASES:
        result[f"{name}_shape"] = f"{requests}x({prefix}+{new})"
        for key, value in _extend_case(dev, requests, prefix, new).items():
            result[f"{name}_{key}"] = value
    return result


def _print(title: str, row: dict) -> None:
    print(title)
    for key, value in row.items():
        print(f"  {key:<28} {value:.4g}" if isinstance(value, float) else f"  {key:<28} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--copy-gbps", type=float, default=None,
                        help="copy bandwidth to compare against (default: measured here)")
    parser.add_argument("--tune-decode", metavar="DIR", default=None,
                        help="sweep decode launch shapes and write the table into DIR")
    parser.add_argument("--decode-batches", type=int, nargs="+", default=[1, 8, 64],
                        help="batch sizes --tune-decode sweeps")
    args = parser.parse_args()
    if args.tune_decode:
        tune_decode(args.device, Path(args.tune_decode), tuple(args.decode_batches))
        return
    _print("decode attention", bench_decode_attention(args.device, args.copy_gbps))
    _print("extend attention", bench_extend_attention(args.device))


if __name__ == "__main__":
    main()
