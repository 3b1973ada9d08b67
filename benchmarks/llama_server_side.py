"""llama.cpp's `llama-server` on the same GGUF and the same token ids, as a third side of
`offline_throughput.py` (its `--llama-server PATH` option) or alone:

    python benchmarks/llama_server_side.py --llama-server /path/to/llama-server \
        --parallel 8,64 --out llama.json

llama.cpp is not a dependency of this project: build `llama-server` yourself (its sources ship in
the llama-cpp-python sdist under vendor/llama.cpp; `cmake -B build -DLLAMA_CURL=OFF` then
`cmake --build build --target llama-server`) and pass its path. Every prompt is sent at once as
token ids to POST /completion (greedy, `ignore_eos`, `n_predict` = the output length, prompt
caching on), from as many client threads as prompts; the server decodes `--parallel` slots at a
time (llama.cpp's continuous batching). Reported: output tokens/s over the whole workload and
the server process's peak resident memory (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

STARTUP_TIMEOUT_S = 120.0


@dataclass
class LlamaRun:
    parallel: int
    seconds: float
    output_tokens: int
    tok_per_s: float
    peak_rss_mb: float | None
    outputs: list[list[int]] = field(repr=False, default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _wait_ready(client: httpx.Client, proc: subprocess.Popen[bytes], log: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log) as f:
                raise RuntimeError(f"llama-server exited ({proc.returncode}):\n{f.read()[-3000:]}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError("llama-server did not become ready")


def run_llama_server(binary: str, gguf_path: str, prompts: list[list[int]], output_len: int,
                     parallel: int, threads: int | None = None) -> LlamaRun:
    """Start llama-server with `parallel` slots, run every prompt, stop it."""
    longest = max(len(p) for p in prompts) + output_len + 16
    port = _free_port()
    threads = threads or os.cpu_count() or 1
    cmd = [binary, "-m", gguf_path, "--host", "127.0.0.1", "--port", str(port),
           "-np", str(parallel), "-c", str(longest * parallel), "-t", str(threads),
           "-tb", str(threads), "-b", "2048", "--no-webui"]
    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as logf:
        log = logf.name
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=3600) as client:
            _wait_ready(client, proc, log)
            body = {"temperature": 0, "n_predict": output_len, "ignore_eos": True,
                    "cache_prompt": True, "return_tokens": True}
            client.post("/completion", json={**body, "prompt": [1, 2, 3], "n_predict": 4})

            def one(p: list[int]) -> list[int]:
                r = client.post("/completion", json={**body, "prompt": p})
                r.raise_for_status()
                return list(r.json().get("tokens") or [])

            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
                outputs = list(pool.map(one, prompts))
            seconds = time.perf_counter() - start
            peak = _peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.unlink(log)
    n_out = sum(len(o) for o in outputs)
    if n_out != output_len * len(prompts):
        raise RuntimeError(f"llama-server returned {n_out} tokens, expected "
                           f"{output_len * len(prompts)} (does it support return_tokens?)")
    return LlamaRun(parallel, seconds, n_out, n_out / seconds, peak, outputs)


def main() -> None:
    from offline_throughput import build_workloads, gguf_location
    from transformers import AutoTokenizer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llama-server", required=True)
    p.add_argument("--workloads", default="shared,distinct")
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--parallel", default="8,64", help="slot counts to try (best reported)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    folder, name = gguf_location()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    workloads = build_workloads(tok, [w for w in args.workloads.split(",") if w],
                                args.num_prompts)
    results: dict[str, Any] = {}
    for wname, prompts in workloads.items():
        for par in (int(x) for x in args.parallel.split(",") if x):
            run = run_llama_server(args.llama_server, os.path.join(folder, name), prompts,
                                   args.output_len, par)
            results[f"{wname}/np{par}"] = {k: v for k, v in asdict(run).items()
                                           if k != "outputs"}
            print(f"[llama-server] {wname} np{par}: {run.tok_per_s:.1f} tok/s, peak RSS "
                  f"{run.peak_rss_mb:.0f} MB", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"loadavg_1m": os.getloadavg()[0], "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
