"""Host cost of a batch-1 speculative (n-gram) step: the Engine's generate path against the
scheduler driven directly, on the CPU.

One engine with `--speculative-algorithm ngram` on a tiny dummy Llama (random weights, SmolLM2's
vocabulary and tokenizer, so detokenization costs what it does on a real model; the forward pass
is small, so the host's share shows). Drafts are made at every step (the back-off is switched
off: random weights reject most drafts), as on the synchronous steps this is about. Each mode
generates the same prompts, greedy, `--max-new-tokens` each, one request at a time:

  * direct     - `Scheduler.step()` in a loop on the scheduler thread (no outputs consumed);
  * engine     - `Engine.generate(...)`, not streamed;
  * stream     - `Engine.generate(..., stream=True)`, every chunk consumed.

Reported per mode (minimum and median over `--repeats` rounds): wall ms per scheduler step (the requests'
wall time over their steps), the ms the scheduler thread spends inside `step()`, the process's CPU
ms per step (all threads: the scheduler's, the caller's, compute workers; less sensitive to
other load than wall time), and the outputs' equality across modes.
`--cprofile MODE` prints cProfile's top functions (all threads' time shows on the caller's
thread only, so the scheduler thread is profiled by wrapping its steps).

    PYTHONPATH=benchmarks python benchmarks/profile_engine_step.py [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import statistics
import tempfile
import time
from typing import Any

# A tiny Llama with SmolLM2-135M's vocabulary (the embedded GGUF provides the tokenizer).
TINY = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
    "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1,
    "num_hidden_layers": 2, "vocab_size": 49152, "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
}
PROMPTS = [
    "Repeat the following text exactly: The committee met on Tuesday to discuss the budget "
    "for the new library. After a long debate, members agreed to fund the children's section.",
    "def total_price(items, tax_rate):\n    subtotal = 0\n    for item in items:\n"
    "        subtotal += item.price * item.quantity\n    return subtotal * (1 + tax_rate)\n",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
]


class StepClock:
    """Wraps `Scheduler.step` with a timer (and optionally a profiler) on its own thread."""

    def __init__(self, scheduler: Any) -> None:
        self.steps = 0
        self.inside = 0.0
        self.profile: cProfile.Profile | None = None
        real = scheduler.step

        def step() -> Any:
            t0 = time.perf_counter()
            if self.profile is not None:
                self.profile.enable()
            try:
                return real()
            finally:
                if self.profile is not None:
                    self.profile.disable()
                self.inside += time.perf_counter() - t0
                self.steps += 1

        scheduler.step = step

    def reset(self) -> None:
        self.steps, self.inside = 0, 0.0


def run_direct(engine: Any, prompt_ids: list[int], params: dict[str, Any]) -> list[int]:
    from sglang.protocol.sampling_params import SamplingParams
    from sglang.runtime.messages import TokenizedGenerateReq
    from sglang.runtime.scheduler.request import make_req

    def drive(s: Any) -> list[int]:
        msg = TokenizedGenerateReq(rid=f"direct-{time.perf_counter_ns()}", input_ids=prompt_ids,
                                   sampling_params=SamplingParams(**params))
        req = make_req(msg, s.kv.req_pool.device)
        s.add_request(req)
        while s.has_work:
            s.step()
        return list(req.output_ids)

    return engine._call(drive)  # type: ignore[no-any-return]


def run_engine(engine: Any, prompt_ids: list[int], params: dict[str, Any], stream: bool
               ) -> list[int]:
    if not stream:
        return engine.generate(input_ids=prompt_ids, sampling_params=params)["output_ids"]  # type: ignore[no-any-return]
    ids: list[int] = []
    for chunk in engine.generate(input_ids=prompt_ids, sampling_params=params, stream=True):
        ids += chunk["output_ids"]
    return ids


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--num-draft-tokens", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10, help="rounds over the prompts per mode")
    p.add_argument("--keep-backoff", action="store_true",
                   help="leave the drafting back-off on (default: draft at every step)")
    p.add_argument("--stream-interval", type=int, default=1,
                   help="the engine's stream_interval (streamed outputs every N tokens)")
    p.add_argument("--cprofile", choices=["direct", "engine", "stream"], default=None)
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args()

    import sglang as sgl
    from sglang.runtime.loading.default_model import default_model_path
    from sglang.runtime.speculative import base

    if not args.keep_backoff:
        base.MAX_BACKOFF_STEPS = 0
    folder = tempfile.mkdtemp(prefix="tiny-llama-")
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(TINY, f)
    engine = sgl.Engine(model_path=folder, tokenizer_path=default_model_path(),
                        load_format="dummy", dtype="float32", device="cpu",
                        log_level="warning", speculative_algorithm="ngram",
                        speculative_num_draft_tokens=args.num_draft_tokens,
                        # Only when asked: the script also measures revisions without the field.
                        **({"stream_interval": args.stream_interval}
                           if args.stream_interval != 1 else {}))
    params = {"temperature": 0, "max_new_tokens": args.max_new_tokens, "ignore_eos": True}
    prompts = [engine.tokenizer.encode(t) for t in PROMPTS]
    clock = engine._call(StepClock)
    modes = {
        "direct": lambda ids: run_direct(engine, ids, params),
        "engine": lambda ids: run_engine(engine, ids, params, stream=False),
        "stream": lambda ids: run_engine(engine, ids, params, stream=True),
    }
    results: dict[str, Any] = {}
    outputs: dict[str, list[list[int]]] = {}
    kept: cProfile.Profile | None = None
    kept_caller: cProfile.Profile | None = None
    try:
        for run in modes.values():  # warm-up
            run(prompts[0][:8])
        for _ in range(args.repeats):
            for name, run in modes.items():  # interleaved, so load drifts hit all alike
                engine.flush_cache()
                clock.reset()
                if name == args.cprofile:
                    clock.profile = clock.profile or cProfile.Profile()
                wall = 0.0
                cpu0 = time.process_time()
                outs = []
                caller = cProfile.Profile() if name == args.cprofile else None
                for ids in prompts:
                    t0 = time.perf_counter()
                    if caller is not None:
                        caller.enable()
                    outs.append(run(ids))
                    if caller is not None:
                        caller.disable()
                    wall += time.perf_counter() - t0
                kept_caller = caller or kept_caller
                cpu = time.process_time() - cpu0
                kept = clock.profile or kept
                clock.profile = None
                outputs[name] = outs
                r = results.setdefault(name, {"wall": [], "inside": [], "cpu": [], "steps": 0})
                r["cpu"].append(1e3 * cpu / clock.steps)
                r["wall"].append(1e3 * wall / clock.steps)
                r["inside"].append(1e3 * clock.inside / clock.steps)
                r["steps"] += clock.steps
        stats = engine._call(lambda s: s.stats())
    finally:
        engine.shutdown()
    report = {
        "machine": platform.node(), "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "max_new_tokens": args.max_new_tokens, "num_draft_tokens": args.num_draft_tokens,
        "backoff": args.keep_backoff, "stream_interval": args.stream_interval, "decode_steps": stats.decode_steps,
        # Over the rounds: a shared machine's load comes and goes; the minimum is the least disturbed.
        "ms_per_step": {n: {"wall_min": round(min(r["wall"]), 3),
                            "wall_median": round(statistics.median(r["wall"]), 3),
                            "inside_step_min": round(min(r["inside"]), 3),
                            "inside_step_median": round(statistics.median(r["inside"]), 3),
                            "cpu_min": round(min(r["cpu"]), 3),
                            "cpu_median": round(statistics.median(r["cpu"]), 3),
                            "steps": r["steps"]} for n, r in results.items()},
        "identical_outputs": all(o == outputs["direct"] for o in outputs.values()),
    }
    print(json.dumps(report, indent=1))
    if kept is not None:
        print(f"--- scheduler thread, mode {args.cprofile} ---")
        pstats.Stats(kept).sort_stats("cumulative").print_stats(args.top)
    if kept_caller is not None:
        print(f"--- caller's thread, mode {args.cprofile} ---")
        pstats.Stats(kept_caller).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
