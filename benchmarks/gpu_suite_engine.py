"""Phases that drive our `sgl.Engine` with token ids: batch-1 decode, offline throughput and the
shared-prefix workload, at tp=1 or the suite's --tp."""

from __future__ import annotations

import json
import time
from typing import Any

import gpu_suite_workloads as wl
from gpu_suite_common import check_fits, free_cuda_memory, median, sync
from gpu_suite_plan import Context

# One engine per child process, reused by consecutive phases that ask for the same arguments.
_CACHED: dict[str, Any] = {}


class NullTokenizer:
    """Stands in for the tokenizer a dummy model lacks: the suite sends and reads token ids only,
    so detokenized text is neither needed nor timed (transformers does not detokenize either)."""

    eos_token_id = None

    def decode(self, ids: Any, **kwargs: Any) -> str:
        return ""


def engine_args(ctx: Context, tp: int, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model_path": ctx.model_dir, "load_format": "dummy", "dtype": ctx.dtype,
        "device": ctx.device, "mem_fraction_static": ctx.mem_fraction_static,
        "random_seed": ctx.seed, **ctx.engine_args, **overrides,
    }
    if tp > 1:
        args["tp_size"] = tp  # tensor parallelism (issue 8); tp=1 keeps the plain arguments
    return args


def get_engine(ctx: Context, tp: int = 1, **overrides: Any) -> tuple[Any, float]:
    """(engine, load seconds); load is 0.0 when the cached engine is reused."""
    import sglang as sgl

    args = engine_args(ctx, tp, **overrides)
    key = json.dumps(args, sort_keys=True, default=str)
    if _CACHED.get("key") == key:
        return _CACHED["engine"], 0.0
    shutdown_engine()
    check_fits(ctx, tp)
    t0 = time.perf_counter()
    llm = sgl.Engine(**args)
    load_s = time.perf_counter() - t0
    if getattr(llm, "tokenizer", "absent") is None:
        llm.tokenizer = NullTokenizer()
    _CACHED.update(key=key, engine=llm)
    return llm, load_s


def shutdown_engine() -> None:
    llm = _CACHED.pop("engine", None)
    _CACHED.pop("key", None)
    if llm is not None:
        llm.shutdown()
        del llm
        free_cuda_memory()


def scheduler_stats(llm: Any) -> dict[str, Any] | None:
    """The scheduler's counters, where this engine exposes them (in-process scheduler only)."""
    try:
        import msgspec

        return msgspec.structs.asdict(llm._call(lambda s: s.stats()))
    except Exception:
        return None


def _max_running(llm: Any) -> int | None:
    try:
        return int(llm._call(lambda s: s.max_running))
    except Exception:
        return None


def _stats_delta(before: dict | None, after: dict | None) -> dict[str, Any]:
    if not before or not after:
        return {}
    keys = ("cached_prompt_tokens", "prompt_tokens", "generated_tokens", "forward_steps",
            "decode_steps", "decode_batch_tokens", "num_retractions")
    d = {k: after[k] - before[k] for k in keys if k in after and k in before}
    if d.get("decode_steps"):
        d["mean_decode_batch"] = d["decode_batch_tokens"] / d["decode_steps"]
    d["kv_total_tokens"] = after.get("kv_total_tokens")
    return d


def _flush(llm: Any) -> None:
    if not llm.flush_cache():
        raise RuntimeError("flush_cache refused: requests still in flight")


def _greedy(n: int) -> dict[str, Any]:
    return {"temperature": 0, "max_new_tokens": n, "ignore_eos": True}


# ---- batch-1 decode ------------------------------------------------------------------------
def _stream_once(llm: Any, prompt: list[int], n: int) -> dict[str, float]:
    """One request, streamed: the first chunk's arrival splits prefill from decode."""
    t0 = time.perf_counter()
    first_t, first_n, total = None, 0, 0
    for chunk in llm.generate(input_ids=prompt, sampling_params=_greedy(n), stream=True):
        k = len(chunk["output_ids"])
        if k and first_t is None:
            first_t, first_n = time.perf_counter(), k
        total += k
    end = time.perf_counter()
    if first_t is None or total != n:
        raise RuntimeError(f"expected {n} output tokens, got {total}")
    decode_s = end - first_t
    return {"ttft_s": first_t - t0, "seconds": end - t0, "tokens": total,
            "decode_tok_per_s": (total - first_n) / decode_s if decode_s > 0 else float("nan"),
            "e2e_tok_per_s": total / (end - t0)}


def run_decode(ctx: Context, tp: int = 1) -> dict[str, Any]:
    s = ctx.sizes
    llm, load_s = get_engine(ctx, tp)
    vocab = int(ctx.model_config["vocab_size"])
    prompt = wl.decode_prompt(s, vocab, ctx.seed)
    _stream_once(llm, prompt, s.decode_new)  # warm-up: kernels compiled, graphs captured
    runs = []
    for _ in range(s.decode_repeats):
        _flush(llm)  # the same TTFT each time: no cached prompt
        runs.append(_stream_once(llm, prompt, s.decode_new))
    rates = [r["decode_tok_per_s"] for r in runs]
    return {"tp": tp, "load_s": load_s, "prompt_len": len(prompt), "new_tokens": s.decode_new,
            "runs": runs, "decode_tok_per_s": median(rates),
            "e2e_tok_per_s": median([r["e2e_tok_per_s"] for r in runs]),
            "ttft_s": median([r["ttft_s"] for r in runs])}


# ---- many requests at once -----------------------------------------------------------------
def _batch_run(llm: Any, prompts: list[list[int]], n_out: int, device: str) -> dict[str, Any]:
    _flush(llm)
    before = scheduler_stats(llm)
    t0 = time.perf_counter()
    outs = llm.generate(input_ids=prompts, sampling_params=_greedy(n_out))
    sync(device)
    seconds = time.perf_counter() - t0
    after = scheduler_stats(llm)
    out_tokens = sum(int(o["meta_info"]["completion_tokens"]) for o in outs)
    expected = len(prompts) * n_out
    if out_tokens != expected:
        raise RuntimeError(f"expected {expected} output tokens, got {out_tokens}")
    return {
        "requests": len(prompts), "prompt_tokens": sum(len(p) for p in prompts),
        "output_tokens": out_tokens, "seconds": seconds, "tok_per_s": out_tokens / seconds,
        "cached_tokens": sum(int(o["meta_info"].get("cached_tokens", 0)) for o in outs),
        "scheduler": _stats_delta(before, after),
    }


def _warm_up(llm: Any, ctx: Context, length: int) -> None:
    vocab = int(ctx.model_config["vocab_size"])
    llm.generate(input_ids=wl.warmup_prompts(8, length, vocab, ctx.seed),
                 sampling_params=_greedy(8))


def run_offline(ctx: Context, tp: int = 1) -> dict[str, Any]:
    s = ctx.sizes
    llm, load_s = get_engine(ctx, tp)
    prompts = wl.offline_prompts(s, int(ctx.model_config["vocab_size"]), ctx.seed)
    _warm_up(llm, ctx, s.offline_min_in)
    res = _batch_run(llm, prompts, s.offline_out, ctx.device)
    res.update(tp=tp, load_s=load_s, output_len=s.offline_out, max_running=_max_running(llm),
               input_len_range=[s.offline_min_in, s.offline_max_in])
    return res


def run_prefix(ctx: Context, radix: bool) -> dict[str, Any]:
    s = ctx.sizes
    # Radix on is the default: no override, so the decode/offline engine is reused.
    llm, load_s = get_engine(ctx, 1, **({} if radix else {"disable_radix_cache": True}))
    prompts = wl.prefix_prompts(s, int(ctx.model_config["vocab_size"]), ctx.seed)
    _warm_up(llm, ctx, s.prefix_unique)
    res = _batch_run(llm, prompts, s.prefix_out, ctx.device)
    res.update(load_s=load_s, radix_cache=radix, prefix_len=s.prefix_len,
               unique_len=s.prefix_unique, output_len=s.prefix_out)
    return res


RUNNERS = {
    "decode": lambda ctx: run_decode(ctx, 1),
    "offline": lambda ctx: run_offline(ctx, 1),
    "tp_decode": lambda ctx: run_decode(ctx, ctx.tp),
    "tp_offline": lambda ctx: run_offline(ctx, ctx.tp),
    "prefix_radix": lambda ctx: run_prefix(ctx, True),
    "prefix_noradix": lambda ctx: run_prefix(ctx, False),
}
