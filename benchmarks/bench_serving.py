"""Online serving benchmark: stream requests at a server and measure latency and throughput.

Talks to our server's native API (`--backend sglang`: POST /generate, SSE `data: {json}` lines
with cumulative `text` and `meta_info`, ending with `data: [DONE]`) or to any OpenAI-compatible
server (`--backend openai`: POST /v1/completions with `stream: true` and
`stream_options.include_usage`). Only `--base-url` is contacted; nothing else on the network.

Per request it records TTFT (first chunk that carries tokens), inter-token latencies (the gap
between token-bearing chunks divided by the tokens in that chunk, one sample per token),
end-to-end latency, output tokens (the server's counts when it reports them, else one per
chunk) and success or the error text. The report (printed, and `--output-file` JSON) has
throughputs, TTFT / ITL / TPOT / E2E mean, median, p90, p99 in ms, achieved concurrency and
the server's cached prompt tokens when it reports them.

    python benchmarks/bench_serving.py --backend sglang --base-url http://127.0.0.1:30000 \
        --dataset random --random-input-len 256 --random-output-len 64 --num-prompts 50 \
        --request-rate 4 --output-file results.json

    python benchmarks/bench_serving.py --dataset shared-prefix --num-groups 4 \
        --prefix-len 1024 --suffix-len 32 --output-len 64 --num-prompts 32 \
        --tokenizer /path/to/folder --tokenizer-gguf-file model.gguf
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np

# ---- prompts ------------------------------------------------------------------------------
# Without a tokenizer, prompts are random words from this list. Every entry is a short, common,
# lowercase English word, which byte-level BPE vocabularies (GPT-2, Llama, SmolLM, Qwen, ...)
# hold as a single " word" token, so N words come to roughly N tokens (plus any BOS).
WORDS: tuple[str, ...] = tuple(
    """
    the of and to in is was for on are with as his they be at one have this from or had by
    but what some we can out other were all there when up use your how said an each she which
    do their time if will way about many then them write would like so these her long make
    thing see him two has look more day could go come did number sound no most people my over
    know water than call first who may down side been now find any new work part take get
    place made live where after back little only round man year came show every good me give
    our under name very through just form great think say help low line differ turn cause
    much mean before move right boy old too same tell does set three want air well also play
    small end put home read hand port large spell add even land here must big high such
    follow act why ask men change went light kind off need house picture try us again animal
    point mother world near build self earth father head stand own page should country found
    answer school grow study still learn plant cover food sun four between state keep eye
    never last let thought city tree cross farm hard start might story saw far sea draw left
    late run while press close night real life few north open seem together next white
    children begin got walk example ease paper group always music those both mark often
    letter until mile river car feet care second book carry took science eat room friend
    began idea fish mountain stop once base hear horse cut sure watch color face wood main
    """.split()
)


@dataclass
class BenchRequest:
    """One request of the workload, built before the run so the run itself does no CPU work."""

    prompt: str
    prompt_len: int  # exact when built from token ids, an estimate for word prompts
    output_len: int
    input_ids: list[int] | None = None
    group: int | None = None  # shared-prefix group, for the report's per-group breakdown


class PromptBuilder:
    """Random prompts of a given token length: random token ids when a tokenizer is given
    (exact lengths, and /generate gets the ids themselves), random vocabulary words otherwise."""

    def __init__(self, tokenizer: Any | None, rng: random.Random) -> None:
        self.tokenizer = tokenizer
        self.rng = rng
        self.candidates: list[int] = []
        if tokenizer is not None:
            # Special tokens (BOS/EOS/chat markers) would change what the model does with the
            # prompt, e.g. an EOS in the middle; keep to ordinary vocabulary ids.
            special = set(getattr(tokenizer, "all_special_ids", []) or [])
            vocab_size = int(getattr(tokenizer, "vocab_size", 0) or len(tokenizer))
            self.candidates = [i for i in range(vocab_size) if i not in special]

    def ids(self, n: int) -> list[int]:
        return self.rng.choices(self.candidates, k=n)

    def words(self, n: int) -> str:
        return " ".join(self.rng.choices(WORDS, k=n))

    def decode(self, ids: list[int]) -> str:
        assert self.tokenizer is not None
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))


def _length(rng: random.Random, length: int, ratio: float) -> int:
    low = max(1, int(length * ratio))
    high = max(low, length)
    return rng.randint(low, high)


def random_dataset(builder: PromptBuilder, rng: random.Random, n: int, input_len: int,
                   output_len: int, ratio: float) -> list[BenchRequest]:
    requests = []
    for _ in range(n):
        in_len = _length(rng, input_len, ratio)
        out_len = _length(rng, output_len, ratio)
        if builder.tokenizer is not None:
            ids = builder.ids(in_len)
            requests.append(BenchRequest(builder.decode(ids), in_len, out_len, ids))
        else:
            requests.append(BenchRequest(builder.words(in_len), in_len, out_len))
    return requests


def shared_prefix_dataset(builder: PromptBuilder, n: int, num_groups: int, prefix_len: int,
                          suffix_len: int, output_len: int) -> list[BenchRequest]:
    """`n` requests spread round-robin over `num_groups` groups; the requests of a group share a
    `prefix_len`-token prefix (a long system prompt) and differ in a `suffix_len`-token tail.
    Round-robin order means consecutive requests hit different prefixes, as interleaved users
    of different apps would."""
    num_groups = max(1, min(num_groups, n))
    use_ids = builder.tokenizer is not None
    prefix_ids = [builder.ids(prefix_len) if use_ids else [] for _ in range(num_groups)]
    prefix_text = [builder.words(prefix_len) if not use_ids else "" for _ in range(num_groups)]
    requests = []
    for i in range(n):
        g = i % num_groups
        if use_ids:
            ids = prefix_ids[g] + builder.ids(suffix_len)
            requests.append(BenchRequest(builder.decode(ids), len(ids), output_len, ids, g))
        else:
            text = prefix_text[g] + " " + builder.words(suffix_len)
            requests.append(BenchRequest(text, prefix_len + suffix_len, output_len, None, g))
    return requests


def load_tokenizer(path: str, gguf_file: str | None) -> Any:
    # Local files only: the benchmark must not reach the Hugging Face Hub (or anything but
    # --base-url), so a hub name fails here instead of downloading.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    return AutoTokenizer.from_pretrained(path, **kwargs)


# ---- one request --------------------------------------------------------------------------
@dataclass
class RequestResult:
    success: bool = False
    error: str = ""
    prompt_len: int = 0  # the server's prompt_tokens when reported, else the dataset's
    prompt_len_from_server: bool = False
    output_tokens: int = 0
    output_tokens_from_server: bool = False
    cached_tokens: int | None = None
    finish_reason: str | None = None
    start: float = 0.0  # seconds since the benchmark started (after any concurrency wait)
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    output_chars: int = 0
    group: int | None = None

    @property
    def tpot(self) -> float | None:
        # Time per output token after the first; undefined for single-token outputs.
        if self.output_tokens <= 1:
            return None
        return (self.latency - self.ttft) / (self.output_tokens - 1)


class StreamError(Exception):
    """The server reported an error inside the stream, or the stream was malformed."""


async def _sse_events(resp: httpx.Response) -> Any:
    """Yield the decoded JSON of each `data:` line; stop at `data: [DONE]`. Raises StreamError
    if the stream ends without [DONE] (a dropped connection is not a finished request)."""
    async for line in resp.aiter_lines():
        line = line.strip()
        if not line.startswith("data:"):
            continue  # blank separators, `event:`/`id:` fields, `:` keep-alive comments
        payload = line[len("data:"):].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except json.JSONDecodeError as exc:
            raise StreamError(f"bad SSE payload {payload[:200]!r}") from exc
    raise StreamError("stream ended before data: [DONE]")


def _error_text(data: dict[str, Any]) -> str | None:
    err = data.get("error")
    if err is None:
        return None
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err)


def _finish_reason_text(reason: Any) -> str | None:
    # Native SGLang reports {"type": "length", ...}; OpenAI a plain string.
    if isinstance(reason, dict):
        return str(reason.get("type"))
    return None if reason is None else str(reason)


def _timing(res: RequestResult, t0: float, chunks: list[tuple[float, float]], end: float) -> None:
    """Fill TTFT / ITL / latency from the token-bearing chunks [(arrival time, tokens)]."""
    res.latency = end - t0
    if not chunks:
        return
    res.ttft = chunks[0][0] - t0
    prev = chunks[0][0]
    for t, tokens in chunks[1:]:
        # A chunk carrying k tokens after a gap dt counts as k tokens at dt/k each, so servers
        # that batch several tokens per chunk are not credited with k-times-slower tokens.
        per_token = (t - prev) / tokens
        res.itl.extend([per_token] * max(1, round(tokens)))
        prev = t


async def request_sglang(client: httpx.AsyncClient, args: argparse.Namespace,
                         req: BenchRequest, res: RequestResult) -> None:
    sampling: dict[str, Any] = {"max_new_tokens": req.output_len,
                                "temperature": args.temperature}
    if args.ignore_eos:
        sampling["ignore_eos"] = True
    payload: dict[str, Any] = {"sampling_params": sampling, "stream": True}
    # Token ids make the prompt length exact (no decode/re-encode drift).
    if req.input_ids is not None:
        payload["input_ids"] = req.input_ids
    else:
        payload["text"] = req.prompt
    payload.update(args.extra_body)

    chunks: list[tuple[float, float]] = []
    prev_tokens = 0
    prev_chars = 0
    counts_known = False
    t0 = time.perf_counter()
    async with client.stream("POST", f"{args.base_url}/generate", json=payload,
                             headers=args.headers) as resp:
        if resp.status_code != 200:
            body = (await resp.aread()).decode(errors="replace")
            raise StreamError(f"HTTP {resp.status_code}: {body[:500]}")
        async for data in _sse_events(resp):
            now = time.perf_counter()
            if (err := _error_text(data)) is not None:
                raise StreamError(f"server error: {err}")
            meta = data.get("meta_info") or {}
            text = data.get("text") or ""
            completion = meta.get("completion_tokens")
            if completion is not None:
                counts_known = True
                new_tokens = int(completion) - prev_tokens
                prev_tokens = int(completion)
            else:
                # No counts: one token per chunk whose (cumulative) text grew.
                new_tokens = 1 if len(text) > prev_chars else 0
                prev_tokens += new_tokens
            prev_chars = max(prev_chars, len(text))
            if new_tokens > 0:
                chunks.append((now, float(new_tokens)))
            if meta.get("prompt_tokens") is not None:
                res.prompt_len = int(meta["prompt_tokens"])
                res.prompt_len_from_server = True
            if meta.get("cached_tokens") is not None:
                res.cached_tokens = int(meta["cached_tokens"])
            if meta.get("finish_reason") is not None:
                res.finish_reason = _finish_reason_text(meta["finish_reason"])
                if res.finish_reason == "abort":
                    raise StreamError(f"request aborted: {meta['finish_reason']}")
    end = time.perf_counter()
    res.output_tokens = prev_tokens
    res.output_tokens_from_server = counts_known
    res.output_chars = prev_chars
    _timing(res, t0, chunks, end)
    res.success = True


async def request_openai(client: httpx.AsyncClient, args: argparse.Namespace,
                         req: BenchRequest, res: RequestResult) -> None:
    payload: dict[str, Any] = {
        "model": args.model,
        "prompt": req.prompt,
        "max_tokens": req.output_len,
        "temperature": args.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if args.ignore_eos:
        payload["ignore_eos"] = True  # extension understood by SGLang / vLLM servers
    payload.update(args.extra_body)

    chunk_times: list[float] = []
    usage: dict[str, Any] | None = None
    chars = 0
    t0 = time.perf_counter()
    async with client.stream("POST", f"{args.base_url}/v1/completions", json=payload,
                             headers=args.headers) as resp:
        if resp.status_code != 200:
            body = (await resp.aread()).decode(errors="replace")
            raise StreamError(f"HTTP {resp.status_code}: {body[:500]}")
        async for data in _sse_events(resp):
            now = time.perf_counter()
            if (err := _error_text(data)) is not None:
                raise StreamError(f"server error: {err}")
            choices = data.get("choices") or []
            if choices:
                delta = choices[0].get("text") or ""
                if delta:
                    chunk_times.append(now)
                    chars += len(delta)
                if choices[0].get("finish_reason") is not None:
                    res.finish_reason = _finish_reason_text(choices[0]["finish_reason"])
            if data.get("usage"):
                usage = data["usage"]
    end = time.perf_counter()

    n_chunks = len(chunk_times)
    total = n_chunks
    if usage is not None and usage.get("completion_tokens") is not None:
        total = int(usage["completion_tokens"])
        res.output_tokens_from_server = True
    if usage is not None and usage.get("prompt_tokens") is not None:
        res.prompt_len = int(usage["prompt_tokens"])
        res.prompt_len_from_server = True
    if usage is not None:
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens", usage.get("cached_tokens"))
        if cached is not None:
            res.cached_tokens = int(cached)
    # OpenAI chunks do not say how many tokens they carry. Assume the first carries one and the
    # rest share the remainder evenly: exact when the server sends one token per chunk, and a
    # fair spread when it coalesces.
    per_chunk = (total - 1) / (n_chunks - 1) if n_chunks > 1 and total > 1 else 1.0
    chunks = [(t, 1.0 if i == 0 else per_chunk) for i, t in enumerate(chunk_times)]
    res.output_tokens = total
    res.output_chars = chars
    _timing(res, t0, chunks, end)
    res.success = True


REQUEST_FUNCS = {"sglang": request_sglang, "openai": request_openai}


async def run_one(client: httpx.AsyncClient, args: argparse.Namespace, req: BenchRequest,
                  bench_start: float) -> RequestResult:
    res = RequestResult(prompt_len=req.prompt_len, group=req.group)
    res.start = time.perf_counter() - bench_start
    try:
        # wait_for bounds the whole request (connect + every chunk), not just each read.
        await asyncio.wait_for(REQUEST_FUNCS[args.backend](client, args, req, res), args.timeout)
    except (asyncio.TimeoutError, httpx.TimeoutException):
        res.success = False
        res.error = f"timed out after {args.timeout:g}s"
    except Exception as exc:  # one bad request must not end the run; it is reported instead
        res.success = False
        res.error = str(exc) if isinstance(exc, StreamError) else f"{type(exc).__name__}: {exc}"
    if not res.success:
        res.latency = time.perf_counter() - bench_start - res.start
    return res


# ---- the run ------------------------------------------------------------------------------
def make_client(args: argparse.Namespace) -> httpx.AsyncClient:
    # trust_env=False: ignore HTTP(S)_PROXY etc., so requests go straight to --base-url.
    # No connection cap: a pool limit would queue requests inside the client and show up as
    # server TTFT; --max-concurrency is the knob for limiting in-flight requests.
    return httpx.AsyncClient(
        timeout=httpx.Timeout(args.timeout),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        trust_env=False,
    )


async def resolve_model(client: httpx.AsyncClient, args: argparse.Namespace) -> str:
    resp = await client.get(f"{args.base_url}/v1/models", headers=args.headers)
    resp.raise_for_status()
    models = resp.json().get("data") or []
    if not models:
        raise RuntimeError("GET /v1/models returned no models; pass --model")
    return str(models[0]["id"])


async def warmup(client: httpx.AsyncClient, args: argparse.Namespace) -> str | None:
    """Send --warmup-requests short requests (not measured). Returns an error text if none
    succeeded, which usually means a wrong URL, backend or model."""
    if args.warmup_requests <= 0:
        return None
    # Its own RNG and unrelated words, so the dataset and the prefix cache stay unaffected.
    text = " ".join(random.Random(-1).choices(WORDS, k=16))
    req = BenchRequest(prompt=text, prompt_len=16, output_len=4)
    results = await asyncio.gather(
        *(run_one(client, args, req, time.perf_counter()) for _ in range(args.warmup_requests))
    )
    if any(r.success for r in results):
        return None
    return results[0].error


async def benchmark(args: argparse.Namespace,
                    requests: list[BenchRequest]) -> tuple[list[RequestResult], float, int, str]:
    async with make_client(args) as client:
        if args.backend == "openai" and not args.model:
            args.model = await resolve_model(client, args)
        if (err := await warmup(client, args)) is not None:
            raise RuntimeError(f"warmup request failed: {err}")

        sem = asyncio.Semaphore(args.max_concurrency) if args.max_concurrency else None
        inflight = 0
        peak = 0
        progress = None
        if not args.disable_tqdm:
            from tqdm import tqdm

            progress = tqdm(total=len(requests), desc="requests", file=sys.stderr)

        async def limited(req: BenchRequest, bench_start: float) -> RequestResult:
            nonlocal inflight, peak
            if sem is not None:
                await sem.acquire()
            inflight += 1
            peak = max(peak, inflight)
            try:
                return await run_one(client, args, req, bench_start)
            finally:
                inflight -= 1
                if sem is not None:
                    sem.release()
                if progress is not None:
                    progress.update(1)

        arrivals = np.random.default_rng(args.seed)
        bench_start = time.perf_counter()
        tasks = []
        for i, req in enumerate(requests):
            if i > 0 and math.isfinite(args.request_rate):
                # Poisson process: exponential gaps with mean 1/rate.
                await asyncio.sleep(float(arrivals.exponential(1.0 / args.request_rate)))
            tasks.append(asyncio.create_task(limited(req, bench_start)))
        results = list(await asyncio.gather(*tasks))
        duration = time.perf_counter() - bench_start
        if progress is not None:
            progress.close()
        return results, duration, peak, args.model or ""


# ---- report -------------------------------------------------------------------------------
def _stats_ms(name: str, values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"{k}_{name}_ms": None for k in ("mean", "median", "p90", "p99")}
    arr = np.asarray(values) * 1000.0
    return {
        f"mean_{name}_ms": float(arr.mean()),
        f"median_{name}_ms": float(np.median(arr)),
        f"p90_{name}_ms": float(np.percentile(arr, 90)),
        f"p99_{name}_ms": float(np.percentile(arr, 99)),
    }


def summarize(args: argparse.Namespace, requests: list[BenchRequest],
              results: list[RequestResult], duration: float, peak: int) -> dict[str, Any]:
    ok = [r for r in results if r.success]
    failed = [r for r in results if not r.success]
    total_in = sum(r.prompt_len for r in ok)
    total_out = sum(r.output_tokens for r in ok)
    cached = [r.cached_tokens for r in ok if r.cached_tokens is not None]
    rate = args.request_rate
    report: dict[str, Any] = {
        "backend": args.backend,
        "base_url": args.base_url,
        "model": args.model,
        "dataset": args.dataset,
        "prompts_sent_as": ("input_ids" if args.backend == "sglang" and requests
                            and requests[0].input_ids is not None else "text"),
        "num_prompts": len(requests),
        "request_rate": "inf" if math.isinf(rate) else rate,  # JSON has no Infinity
        "max_concurrency": args.max_concurrency,
        "seed": args.seed,
        "ignore_eos": args.ignore_eos,
        "temperature": args.temperature,
        "duration_s": duration,
        "completed": len(ok),
        "failed": len(failed),
        "total_input_tokens": total_in,
        "input_tokens_from_server": bool(ok) and all(r.prompt_len_from_server for r in ok),
        "total_output_tokens": total_out,
        "output_tokens_from_server": bool(ok) and all(r.output_tokens_from_server for r in ok),
        "requested_output_tokens": sum(q.output_len for q in requests),
        "request_throughput": len(ok) / duration if duration > 0 else 0.0,
        "input_throughput": total_in / duration if duration > 0 else 0.0,
        "output_throughput": total_out / duration if duration > 0 else 0.0,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else 0.0,
        # Little's law: mean number of requests in flight over the run.
        "concurrency": sum(r.latency for r in ok) / duration if duration > 0 else 0.0,
        "peak_concurrency": peak,
        "cached_tokens_total": sum(cached) if cached else None,
        "cache_hit_rate": (sum(cached) / total_in if cached and total_in else None),
    }
    report.update(_stats_ms("ttft", [r.ttft for r in ok]))
    report.update(_stats_ms("itl", [x for r in ok for x in r.itl]))
    report.update(_stats_ms("tpot", [t for r in ok if (t := r.tpot) is not None]))
    report.update(_stats_ms("e2e_latency", [r.latency for r in ok]))
    report["errors"] = dict(Counter(r.error for r in failed).most_common(10))
    if args.output_details:
        report["requests"] = [
            {k: v for k, v in asdict(r).items() if k != "itl"}
            | {"itl_ms": [x * 1e3 for x in r.itl], "tpot": r.tpot}
            for r in results
        ]
    return report


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def print_report(report: dict[str, Any]) -> None:
    width = 50
    rows: list[tuple[str, Any] | str] = [
        ("Backend:", report["backend"]),
        ("Model:", report["model"] or "-"),
        ("Dataset:", report["dataset"]),
        ("Prompts sent as:", report["prompts_sent_as"]),
        ("Traffic request rate:", report["request_rate"]),
        ("Max concurrency:", report["max_concurrency"] or "unlimited"),
        ("Successful requests:", report["completed"]),
        ("Failed requests:", report["failed"]),
        ("Benchmark duration (s):", report["duration_s"]),
        ("Total input tokens:", report["total_input_tokens"]),
        ("Total generated tokens:", report["total_output_tokens"]),
        ("Requested output tokens:", report["requested_output_tokens"]),
        ("Request throughput (req/s):", report["request_throughput"]),
        ("Input token throughput (tok/s):", report["input_throughput"]),
        ("Output token throughput (tok/s):", report["output_throughput"]),
        ("Total token throughput (tok/s):", report["total_token_throughput"]),
        ("Concurrency (mean / peak):",
         f"{report['concurrency']:.2f} / {report['peak_concurrency']}"),
        ("Cached prompt tokens:", report["cached_tokens_total"]),
        ("Cache hit rate:", report["cache_hit_rate"]),
    ]
    for title, key, label in (("Time to First Token", "ttft", "TTFT"),
                              ("Inter-Token Latency", "itl", "ITL"),
                              ("Time per Output Token (excl. 1st)", "tpot", "TPOT"),
                              ("End-to-End Latency", "e2e_latency", "E2E")):
        rows.append(title)
        for stat in ("mean", "median", "p90", "p99"):
            rows.append((f"{stat.capitalize()} {label} (ms):", report[f"{stat}_{key}_ms"]))
    print("{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=width, c="="))
    for row in rows:
        if isinstance(row, str):
            print("{s:{c}^{n}}".format(s=f" {row} ", n=width, c="-"))
        else:
            print(f"{row[0]:<36}{_fmt(row[1]):>14}")
    print("=" * width)
    for error, count in report["errors"].items():
        print(f"error x{count}: {error}")


# ---- CLI ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", choices=sorted(REQUEST_FUNCS), default="sglang",
                   help="sglang: native POST /generate; openai: POST /v1/completions")
    p.add_argument("--base-url", default="http://127.0.0.1:30000")
    p.add_argument("--model", default=None,
                   help="model name for --backend openai; unset: the first id of GET /v1/models")
    # The environment fallback is applied after parsing so --help never prints a key.
    p.add_argument("--api-key", default=None,
                   help="sent as 'Authorization: Bearer KEY'; unset: $OPENAI_API_KEY if set")
    p.add_argument("--dataset", choices=["random", "shared-prefix"], default="random")
    p.add_argument("--tokenizer", default=None,
                   help="local tokenizer folder for transformers.AutoTokenizer. With it, prompts "
                        "are random token ids (exact lengths; --backend sglang sends the ids as "
                        "input_ids, openai sends their decoded text). Without it, prompts are "
                        "random common English words, about one token each, so lengths are "
                        "approximate until the server reports prompt_tokens.")
    p.add_argument("--tokenizer-gguf-file", default=None,
                   help="GGUF file name inside --tokenizer to read the tokenizer from")
    p.add_argument("--num-prompts", type=int, default=100)
    p.add_argument("--random-input-len", type=int, default=1024)
    p.add_argument("--random-output-len", type=int, default=128)
    p.add_argument("--random-range-ratio", type=float, default=0.0,
                   help="random lengths are uniform in [len*ratio, len]; 1.0 = fixed lengths")
    p.add_argument("--num-groups", type=int, default=4, help="shared-prefix: number of prefixes")
    p.add_argument("--prefix-len", type=int, default=1024, help="shared-prefix: prefix tokens")
    p.add_argument("--suffix-len", type=int, default=64,
                   help="shared-prefix: per-request tokens after the prefix")
    p.add_argument("--output-len", type=int, default=128, help="shared-prefix: output tokens")
    p.add_argument("--request-rate", type=float, default=float("inf"),
                   help="requests per second, Poisson arrivals; inf sends all at once")
    p.add_argument("--max-concurrency", type=int, default=None,
                   help="at most this many requests in flight (the rest wait client-side)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ignore-eos", action="store_true",
                   help="generate exactly the requested output lengths")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--extra-request-body", default=None,
                   help="JSON object merged into every request body")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds per request, from send to the last chunk")
    p.add_argument("--warmup-requests", type=int, default=1,
                   help="short unmeasured requests first; the run stops if all of them fail")
    p.add_argument("--output-file", default=None, help="write the report as JSON here")
    p.add_argument("--output-details", action="store_true",
                   help="include per-request results in --output-file")
    p.add_argument("--disable-tqdm", action="store_true")
    args = p.parse_args(argv)
    args.base_url = args.base_url.rstrip("/")
    args.api_key = args.api_key or os.environ.get("OPENAI_API_KEY")
    args.headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    args.extra_body = json.loads(args.extra_request_body) if args.extra_request_body else {}
    if not isinstance(args.extra_body, dict):
        p.error("--extra-request-body must be a JSON object")
    if args.num_prompts < 1:
        p.error("--num-prompts must be >= 1")
    if args.request_rate <= 0:
        p.error("--request-rate must be > 0 (inf for all at once)")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        p.error("--max-concurrency must be >= 1")
    return args


def build_requests(args: argparse.Namespace) -> list[BenchRequest]:
    tokenizer = (load_tokenizer(args.tokenizer, args.tokenizer_gguf_file)
                 if args.tokenizer else None)
    rng = random.Random(args.seed)
    builder = PromptBuilder(tokenizer, rng)
    if args.dataset == "random":
        return random_dataset(builder, rng, args.num_prompts, args.random_input_len,
                              args.random_output_len, args.random_range_ratio)
    return shared_prefix_dataset(builder, args.num_prompts, args.num_groups, args.prefix_len,
                                 args.suffix_len, args.output_len)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 when at least one request completed, else 1."""
    args = parse_args(argv)
    requests = build_requests(args)
    try:
        results, duration, peak, _ = asyncio.run(benchmark(args, requests))
    except (RuntimeError, httpx.HTTPError) as exc:
        print(f"bench_serving: {exc}", file=sys.stderr)
        return 1
    report = summarize(args, requests, results, duration, peak)
    print_report(report)
    if args.output_file:
        with open(args.output_file, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if report["completed"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
