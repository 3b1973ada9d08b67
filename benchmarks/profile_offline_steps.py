"""Where the GPU suite's offline run spends its GPU time, step by step.

Runs the suite's offline workload (1000 requests, inputs uniform in [512, 1024], 512 outputs,
Llama-3-8B shape, dummy bf16 weights; `--requests` for fewer) through an in-process Engine with
every model forward bracketed by CUDA events (recorded, never synchronized, so the overlapped
scheduler runs as usual). Prints per kind of step: count, GPU ms, tokens, and against its own
ceiling -- prefill and mixed steps as matmul FLOP/s (dense matmuls plus causal attention),
decode steps as bytes/s (weights once plus every request's KV context) -- and the wall time
not covered by any forward (sampling, scheduling, idle GPU).

    python3 benchmarks/profile_offline_steps.py [--requests 1000] [--out steps.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gpu_suite_plan import SIZES  # noqa: E402
from gpu_suite_roofline import ModelShape  # noqa: E402
from gpu_suite_workloads import offline_prompts, warmup_prompts  # noqa: E402


def instrument(engine: Any) -> list[tuple[str, list[int], list[int], Any, Any]]:
    """Wrap the scheduler's runner.forward; returns the list it appends to: (mode, extend
    lengths, sequence lengths, start event, end event) per forward."""
    steps: list[tuple[str, list[int], list[int], Any, Any]] = []

    def wrap(s: Any) -> None:
        real = s.runner.forward

        def forward(batch: Any) -> Any:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = real(batch)
            end.record()
            steps.append((batch.mode.name, list(batch.extend_lens_cpu), list(batch.seq_lens_cpu),
                          start, end))
            return out

        s.runner.forward = forward

    engine._call(wrap)
    return steps


def summarize(steps: list, shape: ModelShape, wall_s: float) -> dict[str, Any]:
    kv_token = shape.kv_bytes_per_token(2)
    weights = shape.decode_weight_bytes(2)
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    decode_by_batch: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for mode, extend, seqs, start, end in steps:
        ms = start.elapsed_time(end)
        k = kinds[mode]
        k["steps"] += 1
        k["ms"] += ms
        k["tokens"] += sum(extend)
        if mode == "DECODE":
            read = weights + kv_token * sum(seqs)
            k["bytes"] += read
            bucket = decode_by_batch[min(len(seqs) // 64 * 64, 1024)]
            bucket[0] += 1
            bucket[1] += ms
            bucket[2] += read
        else:
            # Each request's new tokens over its cached ones, and its one LM-head row.
            k["flops"] += sum(shape.prefill_flops(e, s - e) for e, s in zip(extend, seqs))
    out: dict[str, Any] = {"wall_s": wall_s, "kinds": {}, "decode_by_batch": {}}
    gpu_ms = 0.0
    for mode, k in kinds.items():
        gpu_ms += k["ms"]
        row = {key: k[key] for key in ("steps", "ms", "tokens")}
        if k.get("bytes"):
            row["TBps"] = k["bytes"] / (k["ms"] / 1e3) / 1e12
        if k.get("flops"):
            row["TFLOPs"] = k["flops"] / (k["ms"] / 1e3) / 1e12
        out["kinds"][mode] = row
    for b, (n, ms, read) in sorted(decode_by_batch.items()):
        out["decode_by_batch"][f"{b}-{b + 63}"] = {"steps": n, "ms_per_step": ms / n,
                                                    "TBps": read / (ms / 1e3) / 1e12}
    out["forward_gpu_s"] = gpu_ms / 1e3
    out["outside_forward_s"] = wall_s - gpu_ms / 1e3
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(HERE / "llama3_8b"))
    p.add_argument("--requests", type=int, default=None)
    p.add_argument("--mem-fraction-static", type=float, default=0.85)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import sglang as sgl

    sizes = SIZES["full"]
    config = json.loads((Path(args.model) / "config.json").read_text())
    shape = ModelShape.from_config(config)
    prompts = offline_prompts(sizes, int(config["vocab_size"]), 1234)[: args.requests]
    engine = sgl.Engine(model_path=args.model, load_format="dummy", dtype="bfloat16",
                        mem_fraction_static=args.mem_fraction_static, context_length=8192,
                        random_seed=1234)
    params = {"temperature": 0, "max_new_tokens": sizes.offline_out, "ignore_eos": True}
    engine.generate(input_ids=warmup_prompts(8, sizes.offline_min_in, int(config["vocab_size"]),
                                             1234), sampling_params={**params, "max_new_tokens": 8})
    engine.flush_cache()
    steps = instrument(engine)
    t0 = time.perf_counter()
    outs = engine.generate(input_ids=prompts, sampling_params=params)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    tokens = sum(int(o["meta_info"]["completion_tokens"]) for o in outs)
    result = {"requests": len(prompts), "output_tokens": tokens, "tok_per_s": tokens / wall,
              **summarize(steps, shape, wall)}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    engine.shutdown()


if __name__ == "__main__":
    main()
