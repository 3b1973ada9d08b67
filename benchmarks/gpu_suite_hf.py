"""Phases that run transformers on the same random-weight model shape: `generate` over static
batches (the offline baseline) and batch-1 decode, eager and with static cache + torch.compile."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gpu_suite_workloads as wl
import torch
from gpu_suite_common import TORCH_DTYPES, check_fits, median, shape_of, sync
from gpu_suite_plan import Context
from offline_throughput import left_padded

_CACHED: dict[str, Any] = {}


def get_model(ctx: Context) -> tuple[Any, float]:
    """The model from ctx's config with transformers' own random init, built on the device
    (building an 8B model on the CPU first would take minutes)."""
    if "model" in _CACHED:
        return _CACHED["model"], 0.0
    check_fits(ctx)
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(ctx.model_dir)
    t0 = time.perf_counter()
    moe = bool(shape_of(ctx).experts)
    with torch.device(ctx.device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=TORCH_DTYPES[ctx.dtype])
    if moe and hasattr(model, "set_experts_implementation"):
        # transformers' default experts path gathers a weight copy per routed token
        # ("batched_mm": 14 GiB at a decode batch of 64 on Mixtral); grouped_mm is its fast one.
        model.set_experts_implementation("grouped_mm")
    elif moe:
        model.config._experts_implementation = "grouped_mm"
    if moe:
        print(f"transformers experts path: {getattr(model.config, '_experts_implementation', None)}",
              flush=True)
    model.eval()
    sync(ctx.device)
    _CACHED["model"] = model
    return model, time.perf_counter() - t0


def _pad_id(model: Any) -> int:
    eos = model.config.eos_token_id
    return int(eos[0] if isinstance(eos, list) else (eos if eos is not None else 0))


def generate(model: Any, prompts: list[list[int]], n: int, device: str,
             **kwargs: Any) -> tuple[int, int]:
    """Greedy, exactly n new tokens per row (EOS masked by min_new_tokens), left padded.
    Returns (new tokens, padded prompt width)."""
    pad = _pad_id(model)
    ids, mask = left_padded(prompts, pad)
    width = ids.shape[1]
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
            max_new_tokens=n, min_new_tokens=n, pad_token_id=pad, **kwargs,
        )
    sync(device)
    new = out[:, width:]
    if new.shape[1] != n:
        raise RuntimeError(f"transformers returned {new.shape[1]} new tokens, expected {n}")
    return new.numel(), width


def run_hf_offline(ctx: Context) -> dict[str, Any]:
    """Whole static batches of the offline workload's first requests, as many as fit the time
    slice (at least one): the rate is comparable, the request count is not the full 1000."""
    s = ctx.sizes
    model, load_s = get_model(ctx)
    prompts = wl.offline_prompts(s, int(ctx.model_config["vocab_size"]), ctx.seed)
    generate(model, prompts[:2], 4, ctx.device)  # warm-up
    batches: list[dict[str, Any]] = []
    spent = 0.0
    for b in range(s.hf_max_batches):
        batch = prompts[b * s.hf_batch:(b + 1) * s.hf_batch]
        if not batch or (batches and spent + spent / len(batches) > s.hf_time_slice_s):
            break
        t0 = time.perf_counter()
        n_out, width = generate(model, batch, s.offline_out, ctx.device)
        dt = time.perf_counter() - t0
        spent += dt
        batches.append({"requests": len(batch), "padded_width": width, "output_tokens": n_out,
                        "seconds": dt, "tok_per_s": n_out / dt})
    out_tokens = sum(b["output_tokens"] for b in batches)
    return {"load_s": load_s, "batch_size": s.hf_batch, "batches": batches,
            "requests": sum(b["requests"] for b in batches), "output_tokens": out_tokens,
            "seconds": spent, "tok_per_s": out_tokens / spent,
            "attn_implementation": getattr(model.config, "_attn_implementation", None)}


class _Clock:  # generate() only calls put/end, so no BaseStreamer import is needed
    """A `generate` streamer that only takes timestamps: the first put is the prompt, each later
    one a step's new token (batch 1). Its `.cpu()` copy syncs once per step, a few us against
    a step of milliseconds."""

    def __init__(self) -> None:
        self.puts: list[tuple[float, int]] = []

    def put(self, value: torch.Tensor) -> None:
        self.puts.append((time.perf_counter(), int(value.numel())))

    def end(self) -> None:
        pass


def _decode_rate(model: Any, ctx: Context, warm_up: Callable[[], None], repeats: int,
                 **kwargs: Any) -> dict[str, Any]:
    """Batch-1 decode after `warm_up`: tokens after the first over the time between the first
    token's arrival and the last's, so the prefill is left out as in our own measurement;
    the median of `repeats` runs."""
    s = ctx.sizes
    prompt = wl.decode_prompt(s, int(ctx.model_config["vocab_size"]), ctx.seed)
    warm_up()
    runs = []
    for _ in range(repeats):
        clock = _Clock()
        t0 = time.perf_counter()
        generate(model, [prompt], s.decode_new, ctx.device, streamer=clock, **kwargs)
        total_s = time.perf_counter() - t0
        steps = clock.puts[1:]  # puts[0] is the prompt
        if len(steps) < 2:
            raise RuntimeError(f"the streamer saw {len(steps)} token steps; cannot time decode")
        decode_s = steps[-1][0] - steps[0][0]
        runs.append({"ttft_s": steps[0][0] - t0, "seconds": total_s,
                     "decode_tok_per_s": sum(n for _, n in steps[1:]) / decode_s,
                     "e2e_tok_per_s": s.decode_new / total_s})
    return {"prompt_len": len(prompt), "new_tokens": s.decode_new, "runs": runs,
            **{k: median([r[k] for r in runs]) for k in runs[0]}}


def run_hf_decode(ctx: Context) -> dict[str, Any]:
    model, load_s = get_model(ctx)
    prompt = wl.decode_prompt(ctx.sizes, int(ctx.model_config["vocab_size"]), ctx.seed)
    # One timed run: this is context for the compiled number, not a target.
    rate = _decode_rate(model, ctx, lambda: generate(model, [prompt], 8, ctx.device), 1)
    return {"load_s": load_s, "config": "eager, dynamic cache", **rate}


def run_hf_compile(ctx: Context) -> dict[str, Any]:
    from transformers import CompileConfig

    model, load_s = get_model(ctx)
    cuda = torch.device(ctx.device).type == "cuda"
    cc = CompileConfig(fullgraph=True, backend=ctx.hf_compile_backend,
                       mode="reduce-overhead" if cuda else "default")
    if not cuda:
        cc._compile_all_devices = True  # the dry run exercises the same path on the CPU
    kwargs = {"cache_implementation": "static", "compile_config": cc}
    prompt = wl.decode_prompt(ctx.sizes, int(ctx.model_config["vocab_size"]), ctx.seed)
    first_call: list[float] = []

    def warm_up() -> None:
        # Compilation (and CUDA-graph recording) happens here, at the timed run's shapes.
        for _ in range(2):
            t0 = time.perf_counter()
            generate(model, [prompt], ctx.sizes.decode_new, ctx.device, **kwargs)
            first_call.append(time.perf_counter() - t0)

    rate = _decode_rate(model, ctx, warm_up, ctx.sizes.decode_repeats, **kwargs)
    return {"load_s": load_s, "config": f"static cache + torch.compile ({cc.backend}, {cc.mode})",
            "warmup_call_s": first_call, "compiled": hasattr(model, "_compiled_call"), **rate}


RUNNERS = {"hf_offline": run_hf_offline, "hf_decode": run_hf_decode,
           "hf_compile": run_hf_compile}
