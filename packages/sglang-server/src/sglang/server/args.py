"""Command-line arguments of `python -m sglang.launch_server`, parsed into `ServerArgs`."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from sglang.runtime.config import (
    DTYPES,
    GRAMMAR_BACKENDS,
    LOAD_FORMATS,
    SCHEDULE_POLICIES,
    RuntimeArgs,
)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ServerArgs(msgspec.Struct, kw_only=True):
    """The server-only settings plus the runtime's (`runtime`), which go to the scheduler."""

    runtime: RuntimeArgs
    host: str = "127.0.0.1"
    port: int = 30000
    chat_template: str | None = None
    api_key: str | None = None
    served_model_name: str | None = None
    stream_interval: int = 1
    # Seconds that SIGTERM waits for running requests before the server stops anyway.
    graceful_shutdown_timeout: float = 30.0

    def redacted(self) -> dict[str, Any]:
        """For /get_server_args: everything except the API key."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        if out.get("api_key") is not None:
            out["api_key"] = "<redacted>"
        return out


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sglang.launch_server",
        description="Serve a model over HTTP: native /generate and the OpenAI-compatible API.",
    )
    a = p.add_argument
    a("--model-path", default=None,
      help="HF model folder, .gguf file or hub id (default: the embedded SmolLM2-135M-Instruct)")
    a("--tokenizer-path", default=None, help="tokenizer folder or hub id (default: the model's)")
    a("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    a("--port", type=int, default=30000, help="port to listen on (default: %(default)s)")
    a("--tp", "--tp-size", dest="tp_size", type=_positive_int, default=1,
      help="tensor-parallel degree: one scheduler process per rank (default: %(default)s)")
    a("--nnodes", type=_positive_int, default=1,
      help="machines the --tp ranks span, --tp/--nnodes ranks each (default: %(default)s)")
    a("--node-rank", type=int, default=0,
      help="this machine's index among --nnodes; only node 0 serves HTTP (default: %(default)s)")
    a("--dist-init-addr", default=None, metavar="HOST:PORT",
      help="where the ranks meet (node 0's address and a free port); needed with --nnodes > 1")
    a("--dist-timeout", type=float, default=None,
      help="seconds a collective waits for the other ranks (default: torch.distributed's)")
    a("--mem-fraction-static", type=_fraction, default=0.85,
      help="share of device memory for weights and KV cache (CUDA); on CPU, of free host "
      "memory for the KV cache (default: %(default)s)")
    a("--chat-template", default=None,
      help="chat template: a built-in name or a .json/.jinja file (default: the tokenizer's)")
    a("--attention-reduce-in-fp32", action="store_true",
      help="Triton decode attention keeps its split-KV partial results in float32")
    a("--gemv-max-batch", type=int, default=1,
      help="CUDA: linear layers of at most this many rows run the Triton GEMV instead of "
      "cuBLAS; 0 turns it off (default: %(default)s)")
    a("--dtype", choices=DTYPES, default="auto",
      help="weight/activation dtype (auto: float32 on CPU, bfloat16 on CUDA)")
    a("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    a("--context-length", type=_positive_int, default=None,
      help="max tokens of prompt + output (default: the model's max_position_embeddings)")
    a("--max-running-requests", type=_positive_int, default=None,
      help="max requests decoded together (default: 256 on CPU, 1024 on CUDA)")
    a("--max-total-tokens", type=_positive_int, default=None,
      help="size of the KV pool in tokens (default: derived from memory)")
    a("--schedule-policy", choices=SCHEDULE_POLICIES, default="lpm",
      help="waiting-queue order: lpm = longest cached prefix first, fcfs = arrival order")
    a("--disable-radix-cache", action="store_true", help="do not reuse cached prompt prefixes")
    a("--chunked-prefill-size", type=_positive_int, default=None,
      help="max prompt tokens prefilled per step; longer prompts go in chunks")
    a("--attention-backend", default="auto",
      help="attention kernels: auto (triton on CUDA, torch on CPU), triton or torch")
    a("--disable-cuda-graph", action="store_true", help="run decode eagerly on CUDA")
    a("--cuda-graph-max-bs", type=_positive_int, default=None,
      help="largest decode batch replayed from a CUDA graph (default: 512)")
    a("--grammar-backend", choices=GRAMMAR_BACKENDS, default="xgrammar",
      help="library for regex / json_schema / ebnf constraints (outlines: regex and "
      "json_schema only) (default: %(default)s)")
    a("--disable-jump-forward", action="store_true",
      help="decode text a grammar forces token by token instead of appending it at once")
    a("--api-key", default=None,
      help="require 'Authorization: Bearer KEY' on every endpoint except /health")
    a("--load-format", choices=LOAD_FORMATS, default="auto",
      help="checkpoint format; 'dummy' builds random weights from the config (benchmarks)")
    a("--served-model-name", default=None,
      help="model name reported by the API (default: the model path)")
    a("--random-seed", type=int, default=0, help="seed for weight init and sampling defaults")
    a("--stream-interval", type=_positive_int, default=1,
      help="send a streaming chunk every N generated tokens (default: %(default)s)")
    a("--log-level", choices=LOG_LEVELS, default="info", help="logging level (default: %(default)s)")
    a("--skip-tokenizer-init", action="store_true",
      help="load no tokenizer: /generate takes input_ids and returns output_ids (no text)")
    a("--graceful-shutdown-timeout", type=float, default=30.0,
      help="seconds SIGTERM waits for running requests (default: %(default)s)")
    return p


def parse_args(argv: list[str] | None = None) -> ServerArgs:
    """Parse the command line; exits with status 2 and a message on a bad argument."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        runtime = RuntimeArgs(
            model_path=ns.model_path, tokenizer_path=ns.tokenizer_path,
            load_format=ns.load_format, dtype=ns.dtype, device=ns.device,
            mem_fraction_static=ns.mem_fraction_static, max_total_tokens=ns.max_total_tokens,
            context_length=ns.context_length, max_running_requests=ns.max_running_requests,
            schedule_policy=ns.schedule_policy, disable_radix_cache=ns.disable_radix_cache,
            chunked_prefill_size=ns.chunked_prefill_size, random_seed=ns.random_seed,
            log_level=ns.log_level, attention_backend=ns.attention_backend,
            attention_reduce_in_fp32=ns.attention_reduce_in_fp32,
            gemv_max_batch=ns.gemv_max_batch, disable_cuda_graph=ns.disable_cuda_graph,
            cuda_graph_max_bs=ns.cuda_graph_max_bs,
            grammar_backend=ns.grammar_backend, disable_jump_forward=ns.disable_jump_forward,
            tp_size=ns.tp_size, nnodes=ns.nnodes, node_rank=ns.node_rank,
            dist_init_addr=ns.dist_init_addr, dist_timeout=ns.dist_timeout,
            skip_tokenizer_init=ns.skip_tokenizer_init,
        )
    except ValueError as e:
        parser.error(str(e))
    return ServerArgs(
        runtime=runtime, host=ns.host, port=ns.port,
        chat_template=ns.chat_template, api_key=ns.api_key,
        served_model_name=ns.served_model_name, stream_interval=ns.stream_interval,
        graceful_shutdown_timeout=ns.graceful_shutdown_timeout,
    )
