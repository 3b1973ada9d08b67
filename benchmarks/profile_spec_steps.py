"""Where a speculative (n-gram) step's wall time goes on the host, next to plain decode steps.

Runs the copy workload of `spec_decode.py` at batch 1 on one engine with
`--speculative-algorithm ngram`, with timers wrapped around the scheduler's pieces: drafting,
the verify step as a whole, the model forward call (graph replay or eager launches; it returns
before the GPU finishes), sampling (which waits for the GPU) and the step as a whole, split
into steps that verified and the others (decode steps, prefills). The GPU time of one verify forward and one
decode forward is timed with CUDA events, so host time = step time - what the GPU needs.

    python3 benchmarks/profile_spec_steps.py --model-path /root/smol.gguf [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Any

import torch
from spec_decode import workloads


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-path", default=None, help="default: the embedded SmolLM2-135M")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--num-draft-tokens", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--load-format", default="auto",
                   help="dummy: random weights in the model folder's shape (outputs copy nothing)")
    p.add_argument("--no-backoff", action="store_true",
                   help="draft at every step even when drafts keep failing (random weights)")
    p.add_argument("--verify-as-extend", action="store_true",
                   help="verify steps as EXTEND batches (eager) instead of decode rows")
    args = p.parse_args()

    import sglang as sgl
    from sglang.protocol.sampling_params import SamplingParams
    from sglang.runtime.messages import TokenizedGenerateReq
    from sglang.runtime.scheduler.request import make_req

    if args.no_backoff:
        from sglang.runtime.speculative import base

        base.MAX_BACKOFF_STEPS = 0
    engine = sgl.Engine(model_path=args.model_path, device=args.device, dtype=args.dtype,
                        load_format=args.load_format,
                        speculative_algorithm="ngram", log_level="warning",
                        speculative_num_draft_tokens=args.num_draft_tokens)
    prompts = workloads(engine.tokenizer)["copy"]
    tok = engine.tokenizer

    def scenario(s: Any) -> dict[str, Any]:
        times: dict[str, list[float]] = defaultdict(list)
        gpu: dict[str, list[float]] = defaultdict(list)
        state = {"verify": False}
        if args.verify_as_extend:
            s.verify_as_decode = False

        def timed(obj: Any, name: str, label: str) -> None:
            real = getattr(obj, name)

            def wrapper(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return real(*a, **kw)
                finally:
                    times[label].append(time.perf_counter() - t0)

            setattr(obj, name, wrapper)

        real_forward = s.runner.forward

        def forward(batch: Any) -> Any:
            t0 = time.perf_counter()
            if not batch.input_ids.is_cuda:
                out = real_forward(batch)
                times["forward_call_" + ("verify" if state["verify"] else "decode")].append(
                    time.perf_counter() - t0)
                return out
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = real_forward(batch)
            times["forward_call_" + ("verify" if state["verify"] else "decode")].append(
                time.perf_counter() - t0)
            end.record()
            end.synchronize()  # only for the GPU time: serialises this step
            gpu["verify" if state["verify"] else "decode"].append(start.elapsed_time(end) / 1e3)
            return out

        real_verify = s._run_verify

        def verify(*a: Any) -> Any:
            state["verify"] = True
            t0 = time.perf_counter()
            try:
                return real_verify(*a)
            finally:
                state["verify"] = False
                times["verify_step_body"].append(time.perf_counter() - t0)

        s.runner.forward, s._run_verify = forward, verify
        timed(s, "_propose_drafts", "propose")
        timed(s.out, "sample", "sample")
        # "other": decode steps and the prefills
        steps = {"verify": 0, "other": 0}
        wall = {"verify": 0.0, "other": 0.0}
        for i, text in enumerate(prompts):
            msg = TokenizedGenerateReq(rid=f"prof-{i}", input_ids=tok.encode(text),
                                       sampling_params=SamplingParams(
                                           temperature=0, max_new_tokens=args.max_new_tokens,
                                           ignore_eos=args.load_format == "dummy"))
            s.add_request(make_req(msg, s.kv.req_pool.device))
            while s.has_work:
                n = len(times["verify_step_body"])
                t0 = time.perf_counter()
                s.step()
                kind = "verify" if len(times["verify_step_body"]) > n else "other"
                steps[kind] += 1
                wall[kind] += time.perf_counter() - t0
        del s.runner.forward, s._run_verify, s._propose_drafts, s.out.sample
        s.verify_as_decode = None
        ms = {k: round(1e3 * sum(v) / len(v), 3) for k, v in times.items() if v}
        return {"steps": steps,
                "ms_per_step": {k: round(1e3 * wall[k] / max(steps[k], 1), 3) for k in wall},
                "gpu_ms_per_forward": {k: round(1e3 * sum(v) / len(v), 3)
                                       for k, v in gpu.items() if v},
                "mean_ms": ms, "graphs": s.runner.cuda_graphs is not None}

    try:
        engine.generate(prompts[0], {"temperature": 0, "max_new_tokens": 8})  # warm-up
        print(json.dumps(engine._call(scenario), indent=1))
    finally:
        engine.shutdown()


if __name__ == "__main__":
    main()
