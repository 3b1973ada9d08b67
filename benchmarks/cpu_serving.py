"""CPU serving benchmark: the same workload through `sgl.Engine` and through a launched server,
back to back in one run, with both decode throughputs and their ratio.

The workload is fixed by the seed: `--num-prompts` prompts of `--input-len` random token ids,
greedy, `--output-len` new tokens each (ignore_eos, so every run decodes exactly that many).
The Engine gets them as one `generate` call; the server gets them from as many concurrent
clients on 127.0.0.1 (POST /generate with input_ids), so both schedulers see the same batch.
Each side gets one warm-up request first. Greedy outputs must agree; a mismatch is reported.

The goal (issue 15): server >= 0.9x Engine tokens/s. The load average is printed before and
after each side, since a shared machine skews both; compare ratios from quiet runs.

    python benchmarks/cpu_serving.py --num-prompts 4 --input-len 64 --output-len 48
    python benchmarks/cpu_serving.py --model-path /path/to/model --output-file result.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

STARTUP_TIMEOUT_S = 300.0
TARGET_RATIO = 0.9


@dataclass
class SideResult:
    name: str
    seconds: float
    output_tokens: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    outputs: list[list[int]] = field(default_factory=list)

    @property
    def tok_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds > 0 else 0.0


def make_prompts(n: int, length: int, id_range: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(10, id_range) for _ in range(length)] for _ in range(n)]


def sampling(output_len: int) -> dict[str, Any]:
    return {"temperature": 0, "max_new_tokens": output_len, "ignore_eos": True}


def run_engine(args: argparse.Namespace, prompts: list[list[int]]) -> SideResult:
    import gc

    import sglang as sgl

    kwargs = {"model_path": args.model_path} if args.model_path else {}
    llm = sgl.Engine(**kwargs)
    try:
        llm.generate(input_ids=[prompts[0]], sampling_params=sampling(4))  # warm-up
        before = os.getloadavg()
        t0 = time.perf_counter()
        outs = llm.generate(input_ids=prompts, sampling_params=sampling(args.output_len))
        seconds = time.perf_counter() - t0
        after = os.getloadavg()
    finally:
        llm.shutdown()
    del llm
    gc.collect()
    ids = [list(o["output_ids"]) for o in outs]
    return SideResult("engine", seconds, sum(len(i) for i in ids), before, after, ids)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(args: argparse.Namespace, port: int, log: Any) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sglang.launch_server", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "info"]
    if args.model_path:
        cmd += ["--model-path", args.model_path]
    proc = subprocess.Popen(cmd + args.server_arg, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; log: {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"the server was not healthy after {STARTUP_TIMEOUT_S} s; log: {log.name}")


def _post(client: httpx.Client, ids: list[int], output_len: int) -> list[int]:
    r = client.post("/generate", json={"input_ids": ids, "sampling_params": sampling(output_len)})
    r.raise_for_status()
    return list(r.json()["output_ids"])


def run_server(args: argparse.Namespace, prompts: list[list[int]]) -> SideResult:
    port = _free_port()
    log = tempfile.NamedTemporaryFile("w", prefix="cpu-serving-", suffix=".log", delete=False)
    proc = _launch(args, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=args.timeout) as client:
            _post(client, prompts[0], 4)  # warm-up
            before = os.getloadavg()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(len(prompts)) as pool:
                ids = list(pool.map(lambda p: _post(client, p, args.output_len), prompts))
            seconds = time.perf_counter() - t0
            after = os.getloadavg()
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    threads = [ln.split("compute threads: ", 1)[1].strip()
               for ln in open(log.name, errors="replace") if "compute threads: " in ln]
    if threads:
        print(f"[server] compute threads: {threads[0]}", flush=True)
    return SideResult("server", seconds, sum(len(i) for i in ids), before, after, ids)


def _load(t: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in t)


def report(args: argparse.Namespace, sides: dict[str, SideResult]) -> dict[str, Any]:
    engine, server = sides["engine"], sides["server"]
    ratio = server.tok_per_s / engine.tok_per_s if engine.tok_per_s else 0.0
    print(f"\n{'side':8} {'tokens':>7} {'seconds':>8} {'tok/s':>8}  load avg 1/5/15 before -> after")
    for s in (engine, server):
        print(f"{s.name:8} {s.output_tokens:7d} {s.seconds:8.2f} {s.tok_per_s:8.2f}  "
              f"{_load(s.load_before)} -> {_load(s.load_after)}")
    same = engine.outputs == server.outputs
    verdict = "ok" if ratio >= TARGET_RATIO else f"BELOW the {TARGET_RATIO}x goal"
    print(f"server / engine tok/s: {ratio:.2f} ({verdict}); greedy outputs "
          f"{'identical' if same else 'DIFFER'}; cores {len(os.sched_getaffinity(0))}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    return {
        "args": vars(args), "ratio": ratio, "outputs_identical": same,
        "cores": len(os.sched_getaffinity(0)),
        "sides": {k: {**{f: v for f, v in asdict(s).items() if f != "outputs"},
                      "tok_per_s": s.tok_per_s} for k, s in sides.items()},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-path", default=None, help="default: the runtime's default model")
    p.add_argument("--num-prompts", type=int, default=4)
    p.add_argument("--input-len", type=int, default=64)
    p.add_argument("--output-len", type=int, default=48)
    p.add_argument("--id-range", type=int, default=10000,
                   help="prompt ids are drawn from [10, id-range): keep it under the vocab size")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--order", default="engine,server", choices=["engine,server", "server,engine"])
    p.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    p.add_argument("--server-arg", action="append", default=[],
                   help="an extra launch_server argument (repeat; e.g. --server-arg=--tp-size)")
    p.add_argument("--output-file", default=None, help="write the report as JSON here")
    return p.parse_args(argv)


RUNNERS = {"engine": run_engine, "server": run_server}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prompts = make_prompts(args.num_prompts, args.input_len, args.id_range, args.seed)
    sides: dict[str, SideResult] = {}
    for name in args.order.split(","):
        sides[name] = RUNNERS[name](args, prompts)
        s = sides[name]
        print(f"[{name}] {s.output_tokens} tokens in {s.seconds:.2f} s = {s.tok_per_s:.2f} tok/s "
              f"(load {_load(s.load_before)} -> {_load(s.load_after)})", flush=True)
    result = report(args, sides)
    if args.output_file:
        with open(args.output_file, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
