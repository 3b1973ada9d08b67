"""Where a CPU offline run spends its time: per-step timings and an optional op profile.

Runs the offline-throughput workloads (`offline_throughput.py`: 64 prompts x 64 greedy tokens,
`shared` and `distinct`) through `sgl.Engine` and times, on the scheduler thread, every
`Scheduler.step`, the model forward inside it (by mode and batch shape) and the sampling, so
the scheduler's own Python shows as the remainder. `--torch-profile N` adds torch.profiler's
op table (top N by self CPU time) for each workload, recorded on the scheduler thread.

    PYTHONPATH=benchmarks python benchmarks/cpu_step_profile.py --weights float
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from typing import Any

import torch
from offline_throughput import WEIGHT_FORMS, build_workloads, gguf_location


class StepTimer:
    """Wraps the scheduler's step, the runner's forward and the sampler with wall-clock timers
    (the CPU backend runs synchronously, so wall time is compute time)."""

    def __init__(self, scheduler: Any) -> None:
        self.totals: dict[str, float] = collections.defaultdict(float)
        self.counts: dict[str, int] = collections.defaultdict(int)
        self.shapes: collections.Counter[tuple[str, int, int]] = collections.Counter()
        self._wrap(scheduler, "step", "step")
        self._wrap(scheduler.out, "sample", "sample")
        runner = scheduler.runner
        inner = runner.forward

        def forward(batch: Any) -> torch.Tensor:
            t0 = time.perf_counter()
            out = inner(batch)
            key = f"forward {batch.mode.name.lower()}"
            self.totals[key] += time.perf_counter() - t0
            self.counts[key] += 1
            self.shapes[(batch.mode.name, batch.batch_size, batch.num_tokens)] += 1
            return out

        runner.forward = forward

    def _wrap(self, obj: Any, name: str, key: str) -> None:
        inner = getattr(obj, name)

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            out = inner(*a, **k)
            self.totals[key] += time.perf_counter() - t0
            self.counts[key] += 1
            return out

        setattr(obj, name, timed)

    def reset(self) -> None:
        self.totals.clear()
        self.counts.clear()
        self.shapes.clear()

    def report(self, wall: float) -> str:
        lines = [f"  wall {wall:.2f}s"]
        for key in sorted(self.totals):
            lines.append(f"  {key:<16} {self.totals[key]:7.2f}s  x{self.counts[key]:<5} "
                         f"({self.totals[key] / max(wall, 1e-9):.0%} of wall)")
        fwd = sum(v for k, v in self.totals.items() if k.startswith("forward"))
        rest = self.totals["step"] - fwd - self.totals["sample"]
        lines.append(f"  step - forward - sample = {rest:.2f}s (scheduler Python, batch "
                     f"building, detokenize/emit)")
        decode = [(bs, n) for (m, bs, _), n in self.shapes.items() if m == "DECODE"]
        if decode:
            sizes = collections.Counter({bs: n for bs, n in decode})
            lines.append(f"  decode batch sizes (size: steps): {dict(sorted(sizes.items()))}")
        extend = sorted(((bs, nt), n) for (m, bs, nt), n in self.shapes.items() if m == "EXTEND")
        if extend:
            lines.append("  extend steps (requests, tokens): "
                         + ", ".join(f"{k}x{n}" for k, n in extend))
        return "\n".join(lines)


class ModuleTimer:
    """Wall time per kind of module inside the forward (forward pre/post hooks; the CPU runs
    synchronously): each linear by its attribute name, norms, activation, rotary, the
    attention backend (KV write + attention, rotary included), its per-batch prepare, the LM
    head and the embedding."""

    def __init__(self, runner: Any) -> None:
        self.totals: dict[str, float] = collections.defaultdict(float)
        model = runner.model
        for name, mod in model.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            kind = type(mod).__name__
            if leaf in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj", "embed_tokens"):
                self._hook(mod, leaf)
            elif kind.endswith("Norm"):
                self._hook(mod, "norm")
            elif kind.endswith("AndMul"):
                self._hook(mod, "activation")
            elif kind == "LogitsProcessor":
                self._hook(mod, "lm_head + logits")
        self._wrap(runner.attn_backend, "forward_with_rope", "attention (rope+kv write+attn)")
        self._wrap(runner.attn_backend, "prepare", "attention prepare")
        rotary = getattr(model, "rotary", None)
        if rotary is not None:
            self._wrap(rotary, "forward", "rotary (inside attention)")

    def _hook(self, mod: Any, key: str) -> None:
        starts: list[float] = []
        mod.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))

        def post(*_: Any) -> None:
            self.totals[key] += time.perf_counter() - starts.pop()

        mod.register_forward_hook(post)

    def _wrap(self, obj: Any, name: str, key: str) -> None:
        inner = getattr(obj, name)

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            out = inner(*a, **k)
            self.totals[key] += time.perf_counter() - t0
            return out

        setattr(obj, name, timed)

    def report(self, forward_total: float) -> str:
        lines = ["  inside the forward:"]
        for key, v in sorted(self.totals.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {key:<32} {v:7.2f}s ({v / max(forward_total, 1e-9):.0%})")
        return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="float", choices=sorted(WEIGHT_FORMS))
    p.add_argument("--workloads", default="shared,distinct")
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--torch-profile", type=int, default=0, metavar="N",
                   help="also print torch.profiler's top N ops by self CPU time per workload")
    p.add_argument("--modules", action="store_true",
                   help="time the forward's parts by module kind (hooks add a little overhead)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads first")
    p.add_argument("--dump-outputs", default=None, metavar="PATH",
                   help="write the last round's output ids per workload as JSON (to compare "
                        "greedy outputs between revisions or settings)")
    p.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra sgl.Engine keyword (int/float/bool parsed), repeatable")
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from transformers import AutoTokenizer

    import sglang as sgl

    folder, gguf = gguf_location()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    workloads = build_workloads(tok, [w for w in args.workloads.split(",") if w],
                                args.num_prompts)
    extra: dict[str, Any] = {}
    for kv in args.engine_arg:
        key, value = kv.split("=", 1)
        for cast in (int, float):
            try:
                extra[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            extra[key] = {"true": True, "false": False}.get(value.lower(), value)
    llm = sgl.Engine(**WEIGHT_FORMS[args.weights], **extra)
    sched = llm.runtime.scheduler
    timer = StepTimer(sched)
    modules = ModuleTimer(sched.runner) if args.modules else None
    params = {"temperature": 0, "max_new_tokens": args.output_len, "ignore_eos": True}
    llm.generate(input_ids=[[1, 2, 3]], sampling_params={"temperature": 0, "max_new_tokens": 4})
    print(f"weights={args.weights} threads={torch.get_num_threads()} "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    dumped: dict[str, list[list[int]]] = {}
    for rnd in range(args.rounds):
        for name, prompts in workloads.items():
            llm.flush_cache()
            timer.reset()
            if modules is not None:
                modules.totals.clear()
            prof = None
            if args.torch_profile:
                from torch.profiler import ProfilerActivity, profile

                prof = profile(activities=[ProfilerActivity.CPU])
                llm._loop.call(lambda s, prof=prof: prof.__enter__())
            t0 = time.perf_counter()
            outs = llm.generate(input_ids=prompts, sampling_params=params)
            wall = time.perf_counter() - t0
            if prof is not None:
                llm._loop.call(lambda s, prof=prof: prof.__exit__(None, None, None))
            n_out = sum(int(o["meta_info"]["completion_tokens"]) for o in outs)
            dumped[name] = [list(o["output_ids"]) for o in outs]
            cached = sum(int(o["meta_info"].get("cached_tokens", 0)) for o in outs)
            print(f"[{args.weights}] round {rnd} {name}: {n_out / wall:.1f} tok/s, "
                  f"cached {cached}, load {os.getloadavg()[0]:.2f}", flush=True)
            print(timer.report(wall), flush=True)
            if modules is not None:
                fwd = sum(v for k, v in timer.totals.items() if k.startswith("forward"))
                print(modules.report(fwd), flush=True)
            if prof is not None:
                print(prof.key_averages().table(sort_by="self_cpu_time_total",
                                                row_limit=args.torch_profile), flush=True)
    llm.shutdown()
    if args.dump_outputs:
        with open(args.dump_outputs, "w") as f:
            json.dump(dumped, f)


if __name__ == "__main__":
    main()
