"""Time kernels the way a decode step runs them: captured in a CUDA graph, each call on its own
weights.

`triton.testing.do_bench` launches from the host between L2 flushes; for a kernel of a few
microseconds the host's launch work (Triton's launcher, the wrapper's checks and allocations,
tens of microseconds) then shows up in the measurement, and decides which launch shape looks
fastest. A decode step replays a CUDA graph, where none of that exists, and each layer reads
different weights, which the L2 has not seen. So: capture `calls` back to back in one graph,
each call reading its own copy of the inputs (enough copies to pass twice the L2), replay it,
and report the mean time per call.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch


def copies_past_l2(bytes_per_copy: int, device: torch.device | None = None,
                   least: int = 2) -> int:
    """How many copies of `bytes_per_copy` add up to at least twice the device's L2."""
    l2 = torch.cuda.get_device_properties(device or torch.cuda.current_device()).L2_cache_size
    return max(least, math.ceil(2 * l2 / max(bytes_per_copy, 1)))


def graph_us(calls: Sequence[Callable[[], Any]], replays: int = 10, rounds: int = 5) -> float:
    """Median over `rounds` of the mean microseconds per call, the calls captured in order in
    one CUDA graph replayed `replays` times a round. Raises what a call raises."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture: compiles, first allocations
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    per_call = []
    for _ in range(rounds):
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        per_call.append(start.elapsed_time(end) * 1e3 / (replays * len(calls)))
    del graph
    return statistics.median(per_call)
