"""Run as a script (its own process): the memory that building the embedded SmolLM2 GGUF runtime
costs, with its weights packed (`packed`) or dequantized (`float`). Prints one JSON line.

The baseline is taken after importing torch and the libraries loading uses (transformers'
config classes, gguf, the runtime): their code is not the model's. Then `build_runtime` with a
small KV pool; `rss_growth` is VmRSS after it minus the baseline, `peak_growth` the growth of
the process's peak RSS (VmHWM, reset at the baseline) over the same span, which is where a transient float copy
of the weights would show.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys

MIB = 2**20


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def reset_peak() -> None:
    """Restart the peak (VmHWM): a process started by a large one (pytest holding models)
    inherits that one's ru_maxrss through fork + exec, which would hide our own peak."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(mode: str) -> dict[str, float]:
    import gguf.gguf_reader  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoConfig

    from sglang.runtime.builder import build_runtime
    from sglang.runtime.config import RuntimeArgs
    from sglang.runtime.loading.default_model import default_model_path
    from sglang.runtime.loading.loader import _weight_bytes

    AutoConfig.for_model("llama")
    gc.collect()
    reset_peak()
    base = rss_bytes()
    runtime = build_runtime(RuntimeArgs(
        device="cpu", skip_tokenizer_init=True, max_total_tokens=256, max_running_requests=4,
        context_length=512, dequantize_gguf=mode == "float", log_level="warning"))
    gc.collect()
    return {
        "mode": mode,
        "file_mib": os.path.getsize(default_model_path()) / MIB,
        "weight_mib": _weight_bytes(runtime.scheduler.runner.model) / MIB,
        "rss_growth_mib": (rss_bytes() - base) / MIB,
        "peak_growth_mib": (peak_bytes() - base) / MIB,
    }


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])), flush=True)
