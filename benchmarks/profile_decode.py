"""Where a batch-1 decode step's time goes on CUDA: wall time per token against GPU kernel time.

For each engine variant (defaults; no overlap; no CUDA graphs) it times a batch-1 greedy
generation and profiles one more, printing the mean wall time per token, the GPU busy time per
token and the top kernels. GPU time close to wall time means the kernels are the limit; a gap
means host overhead the GPU waits on.

    python3 benchmarks/profile_decode.py [--model benchmarks/llama3_8b] [--batch 1]
    python3 benchmarks/profile_decode.py --quant awq   # quantized dummy weights (quant_engine's)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

# name: (engine arguments, environment)
VARIANTS: dict[str, tuple[dict, dict[str, str]]] = {
    "default": ({}, {}),
    "no-pdl": ({}, {"SGLANG_KERNELS_PDL": "0"}),
    "cublas": ({"gemv_max_batch": 0}, {"SGLANG_KERNELS_PDL": "0"}),
    "no-overlap": ({"disable_overlap_schedule": True}, {}),
    "no-cuda-graph": ({"disable_cuda_graph": True}, {}),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(Path(__file__).parent / "llama3_8b"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--no-profile", action="store_true", help="time only")
    p.add_argument("--quant", default=None,
                   help="a quantized variant of benchmarks/quant_engine.py (awq, gptq, fp8)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, quant_args = args.model, {}
        if args.quant:
            model, quant_args = quantized_model(args.model, args.quant, Path(tmp))
        run(args, model, quant_args)


def quantized_model(base: str, name: str, folder: Path) -> tuple[str, dict]:
    """A copy of `base`'s config with `quant_engine`'s quantization_config for `name`, and its
    engine overrides (dummy weights are drawn in the checkpoint's layout)."""
    from quant_engine import VARIANTS as QUANT_VARIANTS

    quant, overrides = QUANT_VARIANTS[name]
    config = json.loads((Path(base) / "config.json").read_text())
    if quant is not None:
        config["quantization_config"] = quant
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder), overrides


def run(args: argparse.Namespace, model: str, quant_args: dict) -> None:
    import sglang as sgl

    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(100, 30000, (32,), generator=g).tolist() for _ in range(args.batch)]
    params = {"temperature": 0, "max_new_tokens": args.new_tokens, "ignore_eos": True}
    for name in args.variants.split(","):
        engine_args, env = VARIANTS[name]
        for key in ("SGLANG_KERNELS_PDL",):
            os.environ.pop(key, None)
        os.environ.update(env)  # read at every kernel launch, so before the graphs are captured
        engine = sgl.Engine(
            model_path=model, load_format="dummy", dtype="bfloat16", context_length=4096,
            mem_fraction_static=0.6, cuda_graph_max_bs=max(8, args.batch), **engine_args,
            **quant_args,
        )
        engine.generate(input_ids=prompts, sampling_params=params)  # warm-up
        start = time.perf_counter()
        engine.generate(input_ids=prompts, sampling_params=params)
        wall = time.perf_counter() - start
        n = args.new_tokens
        if args.no_profile:
            print(f"[{name}] wall {wall / n * 1e3:.3f} ms/step ({n / wall * args.batch:.1f} tok/s)",
                  flush=True)
            engine.shutdown()
            continue
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            engine.generate(input_ids=prompts, sampling_params=params)
        kernels: dict[str, float] = defaultdict(float)
        for evt in prof.events():
            if evt.device_type == torch.autograd.DeviceType.CUDA:
                kernels[evt.name] += evt.device_time_total
        busy_ms = sum(kernels.values()) / 1e3
        print(f"[{name}] wall {wall / n * 1e3:.3f} ms/step ({n / wall * args.batch:.1f} tok/s), "
              f"GPU busy {busy_ms / n:.3f} ms/step")
        for k, us in sorted(kernels.items(), key=lambda kv: -kv[1])[:20]:
            print(f"    {us / 1e3 / n:7.3f} ms/step  {k[:110]}")
        engine.shutdown()


if __name__ == "__main__":
    main()
