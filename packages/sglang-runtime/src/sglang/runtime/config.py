"""RuntimeArgs: every knob of the runtime, with defaults and validation."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

SCHEDULE_POLICIES = ("lpm", "fcfs")
DTYPES = ("auto", "float32", "float16", "bfloat16", "half", "float", "bf16", "fp16", "fp32")
LOAD_FORMATS = ("auto", "gguf", "safetensors", "hf", "dummy")
# Constrained-decoding backends (sglang.runtime.grammar.registry holds the implementations).
GRAMMAR_BACKENDS = ("xgrammar", "outlines")


def split_host_port(addr: str) -> tuple[str, int]:
    """"HOST:PORT" (IPv6 as "[::1]:PORT") -> (host, port); ValueError when malformed."""
    host, sep, port = addr.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid dist_init_addr={addr!r}: expected HOST:PORT")
    return host, int(port)


class RuntimeArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model_path: str | None = None
    tokenizer_path: str | None = None
    load_format: str = "auto"
    dtype: str = "auto"
    device: str = "auto"
    # Fraction of device memory for weights + KV pool (CUDA). On CPU, of free host memory for KV.
    mem_fraction_static: float = 0.85
    max_total_tokens: int | None = None
    context_length: int | None = None
    max_running_requests: int | None = None
    schedule_policy: str = "lpm"
    disable_radix_cache: bool = False
    chunked_prefill_size: int | None = None
    max_prefill_tokens: int = 16384
    # "auto": triton on CUDA, torch elsewhere.
    attention_backend: str = "auto"
    # Triton decode: keep the split-KV partial outputs in fp32 rather than the model's dtype.
    attention_reduce_in_fp32: bool = False
    # CUDA: decode replays captured graphs for batches up to this size (None: min(512,
    # max_running_requests)); off with disable_cuda_graph, or where the backend can't be captured.
    disable_cuda_graph: bool = False
    # CUDA: launch decode step N+1 before reading back step N's tokens (scheduler/overlap.py).
    disable_overlap_schedule: bool = False
    cuda_graph_max_bs: int | None = None
    # CUDA: linear layers of inputs up to this many rows (batch-1 decode) run the Triton GEMV
    # instead of cuBLAS; 0 turns it off. Above 1 row cuBLAS was faster on an H100.
    gemv_max_batch: int = 1
    random_seed: int = 0
    log_level: str = "warning"
    # Admission assumes each running request still emits this share of its max_new_tokens; it
    # decays towards the minimum while decoding goes well and resets after a retraction.
    init_new_token_ratio: float = 0.7
    min_new_token_ratio: float = 0.1
    new_token_ratio_decay: float = 0.001
    # Check the KV accounting invariant after every step (tests); it always runs when idle.
    debug_check_integrity: bool = False
    # Structured output: which library compiles regex / json_schema / ebnf constraints, and
    # whether text a grammar forces is appended without model steps (needs the radix cache).
    grammar_backend: str = "xgrammar"
    disable_jump_forward: bool = False
    # Tensor parallelism: tp_size ranks (one scheduler process each) spread evenly over nnodes
    # machines, meeting at dist_init_addr ("HOST:PORT" on node 0; a free local port when None
    # and nnodes == 1). Setting dist_init_addr with tp_size=1 still joins a one-rank group.
    tp_size: int = 1
    nnodes: int = 1
    node_rank: int = 0
    dist_init_addr: str | None = None
    # Seconds a collective may wait for the other ranks (None: torch.distributed's default).
    dist_timeout: float | None = None
    # Seconds a rank process may go without a heartbeat before it counts as hung.
    rank_heartbeat_timeout: float = 20.0
    # Ids in, ids out: load no tokenizer anywhere; prompts must be input_ids, outputs have no text.
    skip_tokenizer_init: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(field: str, value: Any, allowed: str) -> ValueError:
            return ValueError(f"invalid {field}={value!r}: expected {allowed}")

        if not 0.0 < self.mem_fraction_static <= 1.0:
            raise bad("mem_fraction_static", self.mem_fraction_static, "a number in (0, 1]")
        if self.schedule_policy not in SCHEDULE_POLICIES:
            raise bad("schedule_policy", self.schedule_policy, f"one of {SCHEDULE_POLICIES}")
        if self.dtype not in DTYPES:
            raise bad("dtype", self.dtype, f"one of {DTYPES}")
        if self.load_format not in LOAD_FORMATS:
            raise bad("load_format", self.load_format, f"one of {LOAD_FORMATS}")
        for name in ("max_total_tokens", "context_length", "max_running_requests",
                     "chunked_prefill_size", "cuda_graph_max_bs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise bad(name, value, "a positive integer")
        if self.max_prefill_tokens < 1:
            raise bad("max_prefill_tokens", self.max_prefill_tokens, "a positive integer")
        if not 0 <= self.gemv_max_batch <= 8:
            raise bad("gemv_max_batch", self.gemv_max_batch, "an integer in [0, 8]")
        if self.log_level.upper() not in logging.getLevelNamesMapping():
            raise bad("log_level", self.log_level, "a logging level name")
        if self.grammar_backend not in GRAMMAR_BACKENDS:
            raise bad("grammar_backend", self.grammar_backend, f"one of {GRAMMAR_BACKENDS}")
        self._validate_parallel(bad)

    def _validate_parallel(self, bad: Any) -> None:
        for name in ("tp_size", "nnodes"):
            if getattr(self, name) < 1:
                raise bad(name, getattr(self, name), "a positive integer")
        if not 0 <= self.node_rank < self.nnodes:
            raise bad("node_rank", self.node_rank, f"0 <= node_rank < nnodes={self.nnodes}")
        if self.tp_size % self.nnodes:
            raise bad("tp_size", self.tp_size, f"a multiple of nnodes={self.nnodes}")
        if self.nnodes > 1 and self.dist_init_addr is None:
            raise ValueError("nnodes > 1 needs dist_init_addr (HOST:PORT of node 0)")
        if self.dist_init_addr is not None:
            split_host_port(self.dist_init_addr)
        if self.dist_timeout is not None and self.dist_timeout <= 0:
            raise bad("dist_timeout", self.dist_timeout, "a positive number of seconds")
        if self.rank_heartbeat_timeout <= 0:
            raise bad("rank_heartbeat_timeout", self.rank_heartbeat_timeout,
                      "a positive number of seconds")

    @property
    def ranks_per_node(self) -> int:
        return self.tp_size // self.nnodes

    @property
    def node_tp_ranks(self) -> list[int]:
        """The tensor-parallel ranks this node runs."""
        per = self.ranks_per_node
        return list(range(self.node_rank * per, (self.node_rank + 1) * per))

    @property
    def distributed(self) -> bool:
        """Whether the scheduler joins a torch.distributed group."""
        return self.tp_size > 1 or self.dist_init_addr is not None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RuntimeArgs:
        try:
            return msgspec.convert(kwargs, cls)
        except msgspec.ValidationError as e:
            raise ValueError(f"invalid runtime argument: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)
