"""Quantized weights and the FP8 KV cache through `sgl.Engine` on Llama-3-8B-shaped dummy weights:
batch-1 decode and offline throughput for bf16, AWQ 4-bit, GPTQ 4-bit and FP8 (W8A8), each
against its own decode roofline, and the KV pool's token capacity with an FP8 cache.

Each variant runs in its own process (a fresh GPU), one after another, with the GPU suite's
workloads (`gpu_suite_engine.run_decode` / `run_offline`). Dummy quantized weights are random
codes in the method's checkpoint layout (`load_format="dummy"` with a `quantization_config`).

Roofline of a decode step: the bytes it must read (every layer's weights as stored: 4-bit codes
plus one bf16 scale and zero per group and column, fp8 codes plus a row scale; norms, the bf16
LM head, and the mean KV context) over the copy bandwidth measured in the same run.

    python3 benchmarks/quant_engine.py [--variants bf16,awq,gptq,fp8,fp8_kv] [--json out.json]
    python3 benchmarks/quant_engine.py --dry      # tiny model on the CPU, every code path
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gpu_suite_plan import SIZES, Context  # noqa: E402
from gpu_suite_roofline import ModelShape, fmt_bytes  # noqa: E402

GROUP = 128
# name -> (quantization_config written into config.json, engine overrides)
VARIANTS: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = {
    "bf16": (None, {}),
    "awq": ({"quant_method": "awq", "bits": 4, "group_size": GROUP, "zero_point": True,
             "version": "gemm"}, {}),
    "gptq": ({"quant_method": "gptq", "bits": 4, "group_size": GROUP, "sym": True,
              "desc_act": False}, {}),
    "fp8": (None, {"quantization": "fp8"}),
    "fp8_kv": (None, {"kv_cache_dtype": "fp8_e4m3"}),
}


def linear_bytes_per_param(name: str, dtype_bytes: int) -> float:
    """Bytes a decode step reads per linear-layer parameter as the variant stores it."""
    quant = VARIANTS[name][0]
    if quant is not None:  # codes + a scale and a zero point (model dtype) per group and column
        return quant["bits"] / 8 + 2 * dtype_bytes / quant["group_size"]
    if VARIANTS[name][1].get("quantization") == "fp8":
        return 1.0  # row scales: 4 bytes per row, negligible
    return float(dtype_bytes)


def decode_roofline(shape: ModelShape, name: str, dtype_bytes: int, kv_bytes: int,
                    bandwidth: float, prompt_len: int, new_tokens: int) -> dict[str, Any]:
    linear = shape.layers * (shape.layer_params - 2 * shape.hidden)
    rest = shape.layers * 2 * shape.hidden + shape.hidden + shape.lm_head_params
    weights = linear * linear_bytes_per_param(name, dtype_bytes) + rest * dtype_bytes
    kv = shape.kv_bytes_per_token(kv_bytes) * (prompt_len + (new_tokens - 1) / 2)
    step = (weights + kv) / bandwidth
    return {"weight_bytes": weights, "kv_bytes": kv, "step_s": step, "tok_per_s": 1 / step,
            "formula": f"({fmt_bytes(weights)} weights + {fmt_bytes(kv)} KV) / "
                       f"{bandwidth / 1e12:.2f} TB/s = {step * 1e3:.3f} ms"}


def run_variant(name: str, base_dir: Path, dry: bool, sizes_mode: str, offline_requests: int,
                offline_out: int) -> dict[str, Any]:
    import gpu_suite_engine as eng
    import torch
    from kernel_micro import copy_bandwidth_gbps

    config = json.loads((base_dir / "config.json").read_text())
    quant, overrides = VARIANTS[name]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        if quant is not None:
            config = dict(config, quantization_config=quant)
        (model_dir / "config.json").write_text(json.dumps(config))
        device = "cpu" if dry else "cuda"
        dtype = "float32" if dry else "bfloat16"
        sizes = replace(SIZES[sizes_mode], offline_requests=offline_requests,
                        offline_out=offline_out)
        extra = {"max_total_tokens": 16384, "max_running_requests": 64} if dry else \
            {"context_length": 8192}
        ctx = Context(mode=sizes_mode, device=device, dtype=dtype, model_name=name,
                      model_dir=str(model_dir), model_config=config, results_dir=tmp,
                      engine_args={**extra, **overrides}, sizes=sizes)
        t0 = time.perf_counter()
        decode = eng.run_decode(ctx)
        llm, _ = eng.get_engine(ctx)
        kv_tokens = (eng.scheduler_stats(llm) or {}).get("kv_total_tokens")
        offline = eng.run_offline(ctx)
        eng.shutdown_engine()
        seconds = time.perf_counter() - t0
    shape = ModelShape.from_config(config)
    dtype_bytes = 4 if dry else 2
    kv_bytes = 1 if "kv_cache_dtype" in overrides else dtype_bytes
    # The dry run's bandwidth is a placeholder: it only exercises the arithmetic.
    bw = 20e9 if dry else copy_bandwidth_gbps(torch.device(device), 2048) * 1e9
    roof = decode_roofline(shape, name, dtype_bytes, kv_bytes, bw, int(decode["prompt_len"]),
                           decode["new_tokens"])
    return {"variant": name, "quantization_config": quant, "engine_overrides": overrides,
            "decode_tok_per_s": decode["decode_tok_per_s"], "decode": decode,
            "offline_tok_per_s": offline["tok_per_s"], "offline": offline,
            "kv_total_tokens": kv_tokens, "copy_bandwidth": bw, "roofline": roof,
            "of_roofline": decode["decode_tok_per_s"] / roof["tok_per_s"], "seconds": seconds}


def summarize(results: dict[str, dict[str, Any]]) -> list[str]:
    base = results.get("bf16")
    lines = ["| variant | decode tok/s | of its roofline | vs bf16 decode | offline tok/s | "
             "vs bf16 offline | KV tokens | vs bf16 KV |", "|" + " --- |" * 8]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error'][:80]} |" + " |" * 6)
            continue

        def ratio(key: str, r: dict[str, Any] = r) -> str:
            if not base or "error" in base or not base.get(key) or r.get(key) is None:
                return ""
            return f"{r[key] / base[key]:.2f}x"

        lines.append(
            f"| {name} | {r['decode_tok_per_s']:.1f} | {100 * r['of_roofline']:.1f}% of "
            f"{r['roofline']['tok_per_s']:.0f} | {ratio('decode_tok_per_s')} | "
            f"{r['offline_tok_per_s']:.0f} | {ratio('offline_tok_per_s')} | "
            f"{r['kv_total_tokens']} | {ratio('kv_total_tokens')} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--model-dir", default=str(HERE / "llama3_8b"))
    p.add_argument("--offline-requests", type=int, default=300)
    p.add_argument("--offline-out", type=int, default=256)
    p.add_argument("--dry", action="store_true", help="tiny model on the CPU")
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    base_dir = Path(args.model_dir)
    mode = "full"
    if args.dry:
        from gpu_suite import DRY_CONFIG

        base_dir = Path(tempfile.mkdtemp())
        (base_dir / "config.json").write_text(json.dumps(DRY_CONFIG))
        mode = "dry"
        args.offline_requests, args.offline_out = 12, 8
    if args.child:
        name, out = args.child.split("=", 1)
        result = run_variant(name, base_dir, args.dry, mode, args.offline_requests,
                             args.offline_out)
        Path(out).write_text(json.dumps(result, default=str))
        return
    results: dict[str, dict[str, Any]] = {}
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = f.name
        cmd = [sys.executable, __file__, "--child", f"{name}={out}", "--model-dir", str(base_dir),
               "--offline-requests", str(args.offline_requests),
               "--offline-out", str(args.offline_out)] + (["--dry"] if args.dry else [])
        print(f"== {name}", flush=True)
        proc = subprocess.run(cmd, env=os.environ.copy())
        text = Path(out).read_text() if Path(out).stat().st_size else ""
        results[name] = json.loads(text) if proc.returncode == 0 and text else \
            {"error": f"child exited {proc.returncode}"}
        if "error" not in results[name]:
            r = results[name]
            print(f"   decode {r['decode_tok_per_s']:.1f} tok/s ({100 * r['of_roofline']:.1f}% "
                  f"of {r['roofline']['formula']}), offline {r['offline_tok_per_s']:.0f} tok/s, "
                  f"KV {r['kv_total_tokens']} tokens", flush=True)
    print("\n".join(summarize(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
