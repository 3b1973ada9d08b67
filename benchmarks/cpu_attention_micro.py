"""One layer's attention on the CPU: the torch backend against the cpu backend (C kernels).

Shapes of SmolLM2-135M (9 query heads, 3 KV heads, head_dim 64) in the offline-throughput
workloads: decode of 64 requests with and without a ~600-token shared prefix, the extend step
of 63 requests that follows a cached prefix, and single prompts of growing length (where the
kernel's per-token loop meets SDPA's tiles: `cpu_backend.MAX_KERNEL_EXTEND`). Each case is
timed as `prepare` + one layer's `forward_with_rope` (rotary, KV write, attention), median of
`--repeat` runs, at each thread count of `--threads`.

    python benchmarks/cpu_attention_micro.py --threads 1,2
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch

from sglang.runtime.attention.cpu_backend import CpuAttentionBackend
from sglang.runtime.attention.torch_backend import TorchAttentionBackend
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode
from sglang.runtime.layers.rotary import RotaryEmbedding

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64


def make_batch(shared: int, cached: list[int], new: list[int], pool: KVPool) -> ForwardBatch:
    """Requests whose first `shared` positions use the same slots, then `cached[i]` slots of
    their own, computing `new[i]` tokens (DECODE when all are 1)."""
    n = len(new)
    seq = [shared + c + e for c, e in zip(cached, new)]
    table = torch.zeros(n, max(seq) + 1, dtype=torch.int64)
    nxt = shared
    for i, total in enumerate(seq):
        table[i, :shared] = torch.arange(shared)
        table[i, shared:total] = torch.arange(nxt, nxt + total - shared)
        nxt += total - shared
    prefix = [shared + c for c in cached]
    positions = torch.cat([torch.arange(p, p + e) for p, e in zip(prefix, new)])
    loc = torch.cat([table[i, p:p + e] for i, (p, e) in enumerate(zip(prefix, new))])
    decode = all(e == 1 for e in new)
    return ForwardBatch(
        mode=ForwardMode.DECODE if decode else ForwardMode.EXTEND,
        input_ids=torch.zeros(len(positions), dtype=torch.int64), positions=positions,
        out_cache_loc=loc, req_pool_indices=torch.arange(n), seq_lens=torch.tensor(seq),
        prefix_lens=torch.tensor(prefix), extend_lens=torch.tensor(new), req_to_token=table,
        kv_pool=pool, seq_lens_cpu=seq, prefix_lens_cpu=prefix, extend_lens_cpu=list(new),
    )


def cases(rng: random.Random) -> dict[str, tuple[int, list[int], list[int]]]:
    return {
        "decode shared (64 x 610 + 14..100)": (610, [rng.randint(13, 99) for _ in range(64)],
                                                [1] * 64),
        "decode distinct (64 x 10..100)": (0, [rng.randint(9, 99) for _ in range(64)], [1] * 64),
        "extend after a cached prefix (63 x 14 on 614)": (614, [0] * 63, [14] * 63),
        "prefill 16": (0, [0], [16]),
        "prefill 64": (0, [0], [64]),
        "prefill 128": (0, [0], [128]),
        "prefill 629": (0, [0], [629]),
    }


def median_ms(fn: Callable[[], object], repeat: int, clock: Callable[[], float]) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--cpu-time", action="store_true",
                   help="time with the process's CPU time instead of the wall clock: on a shared "
                        "machine, one thread's figures then leave out the time other processes "
                        "held its core (with more threads, it counts every thread's time)")
    args = p.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    rng = random.Random(0)
    torch.manual_seed(0)
    rotary = RotaryEmbedding(HEAD_DIM, 4096, {"rope_theta": 10000.0, "rope_type": "default"})
    backends = {"torch": TorchAttentionBackend(), "cpu": CpuAttentionBackend()}
    print(f"| case | threads | {' | '.join(f'{b} ms' for b in backends)} | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for name, (shared, cached, new) in cases(rng).items():
        slots = shared + sum(cached) + sum(new) + 1
        pool = KVPool(slots, 1, KV_HEADS, HEAD_DIM, torch.float32, "cpu")
        pool.k[0][:slots] = torch.randn(slots, KV_HEADS, HEAD_DIM)
        pool.v[0][:slots] = torch.randn(slots, KV_HEADS, HEAD_DIM)
        batch = make_batch(shared, cached, new, pool)
        tokens = batch.num_tokens
        q = torch.randn(tokens, HEADS, HEAD_DIM)
        k, v = torch.randn(tokens, KV_HEADS, HEAD_DIM), torch.randn(tokens, KV_HEADS, HEAD_DIM)
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            ms = {}
            for label, backend in backends.items():
                def step(backend=backend, batch=batch, q=q, k=k, v=v) -> torch.Tensor:
                    backend.prepare(batch)
                    return backend.forward_with_rope(q.clone(), k, v, batch.positions, rotary, 0,
                                                     HEAD_DIM**-0.5, batch)
                ms[label] = median_ms(step, args.repeat, clock)
            cells = " | ".join(f"{ms[b]:.3f}" for b in backends)
            print(f"| {name} | {threads} | {cells} | {ms['torch'] / ms['cpu']:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
