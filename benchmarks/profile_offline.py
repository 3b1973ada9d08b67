"""Host-side profile of the scheduler thread during an offline batch on CUDA.

With overlap, the GPU waits on the host only when the scheduler's Python per step takes longer
than the step's kernels. This runs a batch of long-prompt requests through the Engine with
cProfile enabled on the scheduler thread and prints the wall time, the steps, the host time per
decode step, and the top functions by cumulative time.

    python3 benchmarks/profile_offline.py [--requests 300] [--output-len 128]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path
from typing import Any

import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(Path(__file__).parent / "llama3_8b"))
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--output-len", type=int, default=128)
    args = p.parse_args()

    import sglang as sgl

    g = torch.Generator().manual_seed(0)
    lens = torch.randint(512, 1025, (args.requests,), generator=g).tolist()
    prompts = [torch.randint(100, 30000, (n,), generator=g).tolist() for n in lens]
    params = {"temperature": 0, "max_new_tokens": args.output_len, "ignore_eos": True}
    engine = sgl.Engine(model_path=args.model, load_format="dummy", dtype="bfloat16",
                        context_length=4096)
    engine.generate(input_ids=prompts[:8], sampling_params=params)  # warm-up
    prof = cProfile.Profile()

    def stats(s: Any) -> tuple[int, int]:
        return s.decode_steps, s.forward_steps

    d0, f0 = engine._call(stats)
    engine._call(lambda s: prof.enable())
    start = time.perf_counter()
    engine.generate(input_ids=prompts, sampling_params=params)
    wall = time.perf_counter() - start
    engine._call(lambda s: prof.disable())
    d1, f1 = engine._call(stats)
    out = io.StringIO()
    st = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    st.print_stats(30)
    print(out.getvalue()[-9000:])
    tokens = args.requests * args.output_len
    print(f"wall {wall:.2f} s, {tokens / wall:.0f} out tok/s; decode steps {d1 - d0}, "
          f"extend steps {f1 - f0 - (d1 - d0)}; host time in step() per forward "
          f"{st.total_tt / max(f1 - f0, 1) * 1e3:.2f} ms (profiled, so inflated)")
    engine.shutdown()


if __name__ == "__main__":
    main()
