"""RuntimeArgs: every knob of the runtime, with defaults, help text and validation.

Each field is declared once (type, default, `doc` help text and choices); the Engine's keywords,
`launch_server`'s flags and the validation below all read that declaration. Plug-in names are
checked against their registries (`sglang.runtime.plugins`) without loading anything.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from sglang.runtime.arg_fields import check_choices, doc, fold_case
from sglang.runtime.layers.quantization import QUANTIZATION_METHODS
from sglang.runtime.plugins import (
    ATTENTION_BACKENDS,
    GRAMMAR_BACKENDS,
    SCHEDULE_POLICIES,
    SPECULATIVE_ALGORITHMS,
    UnknownPluginError,
)

DTYPES = ("auto", "float32", "float16", "bfloat16", "half", "float", "bf16", "fp16", "fp32")
# "auto": gguf for *.gguf files, hf otherwise; "dummy": random weights from the model's config.
LOAD_FORMATS = ("auto", "dummy", "hf", "safetensors", "gguf")
# --kv-cache-dtype: auto stores K/V in the model's dtype; the fp8 formats store one byte per
# element with a per-layer scale (cache.kv_quant maps them to torch dtypes).
KV_CACHE_DTYPES = ("auto", "fp8_e4m3", "fp8_e5m2")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Short flag spellings kept for compatibility with SGLang's command line (every command that
# generates flags from RuntimeArgs adds them: launch_server, the batch video job).
FLAG_ALIASES: dict[str, tuple[str, ...]] = {"tp_size": ("--tp",)}
# Drafts beyond this per step cost more in the verify pass than any acceptance could return.
MAX_DRAFT_TOKENS = 64
# The attention_backend that picks one for the device (attention.base.resolve_backend_name).
AUTO_ATTENTION_BACKEND = "auto"


def split_host_port(addr: str) -> tuple[str, int]:
    """"HOST:PORT" (IPv6 as "[::1]:PORT") -> (host, port); ValueError when malformed."""
    host, sep, port = addr.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid dist_init_addr={addr!r}: expected HOST:PORT")
    return host, int(port)


class RuntimeArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every knob of the runtime: Engine keywords, launch_server flags (`--field-name`) and
    their defaults, declared once per field with its help text (`doc`)."""

    model_path: Annotated[str | None, doc(
        "HF model folder, .gguf file or hub id", unset="the embedded SmolLM2-135M-Instruct"
    )] = None
    tokenizer_path: Annotated[str | None, doc(
        "tokenizer folder or hub id", unset="the model's"
    )] = None
    load_format: Annotated[str, doc(
        "checkpoint format: auto (gguf for .gguf files, hf otherwise), hf (alias safetensors), "
        "gguf, or dummy (random weights from the model's config, for benchmarks)",
        choices=LOAD_FORMATS,
    )] = "auto"
    dtype: Annotated[str, doc(
        "weight and activation dtype (auto: float32 on CPU, bfloat16 on CUDA)", choices=DTYPES
    )] = "auto"
    quantization: Annotated[str | None, doc(
        "quantized weights: awq / gptq must match the checkpoint's quantization_config; fp8 "
        "quantizes a float checkpoint's linear layers at load (per-channel e4m3); gguf keeps a "
        ".gguf file's Q8_0/Q4_0/Q4_1/Q4_K/Q5_K/Q6_K weights packed (CPU)",
        choices=QUANTIZATION_METHODS,
        unset="the checkpoint's quantization_config, if any; gguf for .gguf files on CPU",
    )] = None
    dequantize_gguf: Annotated[bool, doc(
        "dequantize a .gguf file's weights to the model dtype at load instead of keeping them "
        "packed (what CPU does by default; CUDA always dequantizes)"
    )] = False
    cpu_int8_activations: Annotated[bool, doc(
        "CPU: packed layers (GGUF, AWQ, GPTQ) multiply batches of 17 rows or more with "
        "activations quantized to int8 (AVX-512 VNNI, else AVX2; the same results on either): "
        "about 1.5x faster prefill and large decode batches with VNNI; with AVX2 4-bit weights "
        "1.1-2x faster products, 8-bit ones faster only up to about 64 rows. Logits move by "
        "the activations' rounding and depend on the batch (off: exact fp32 activations)"
    )] = False
    kv_cache_dtype: Annotated[str, doc(
        "KV cache storage: auto (the model's dtype), fp8_e4m3 or fp8_e5m2 (one byte per "
        "element, per-layer scales from the checkpoint's k_scale/v_scale, else 1.0)",
        choices=KV_CACHE_DTYPES,
    )] = "auto"
    device: Annotated[str, doc(
        "cpu, cuda, cuda:N, or auto (cuda when available, else cpu)"
    )] = "auto"
    mem_fraction_static: Annotated[float, doc(
        "share of device memory for weights + KV pool (CUDA); on CPU, of free host memory for "
        "the KV pool"
    )] = 0.85
    max_total_tokens: Annotated[int | None, doc(
        "size of the KV pool in tokens", unset="derived from memory"
    )] = None
    context_length: Annotated[int | None, doc(
        "max tokens of prompt + output", unset="the model's max_position_embeddings"
    )] = None
    max_running_requests: Annotated[int | None, doc(
        "max requests decoded together", unset="256 on CPU, 1024 on CUDA"
    )] = None
    schedule_policy: Annotated[str, doc(
        "waiting-queue order: lpm = longest cached prefix first, fcfs = arrival order, or a "
        "plug-in's", registry=SCHEDULE_POLICIES,
    )] = "lpm"
    disable_radix_cache: Annotated[bool, doc("do not reuse cached prompt prefixes")] = False
    chunked_prefill_size: Annotated[int | None, doc(
        "max prompt tokens prefilled per step, longer prompts go in chunks",
        unset="4096 on CPU, 8192 on CUDA",
    )] = None
    max_prefill_tokens: Annotated[int, doc(
        "upper bound of the prefill chunk, whatever chunked_prefill_size says"
    )] = 16384
    attention_backend: Annotated[str, doc(
        "attention kernels: auto (triton on CUDA, cpu on the CPU, torch elsewhere), or a "
        "registered backend",
        choices=(AUTO_ATTENTION_BACKEND,), registry=ATTENTION_BACKENDS,
    )] = AUTO_ATTENTION_BACKEND
    attention_reduce_in_fp32: Annotated[bool, doc(
        "attention softmax and reductions in float32 when the model runs in bf16/fp16 (torch: "
        "upcast q/k/v; Triton: split-KV decode partials in float32, extend always is)"
    )] = False
    fuse_decode_rope: Annotated[bool, doc(
        "CUDA (triton backend): decode attention rotates the current token's query and key and "
        "writes its K/V itself, one kernel fewer per layer; not applied with speculative "
        "decoding, whose verify rows read each other's new keys"
    )] = False
    disable_cuda_graph: Annotated[bool, doc(
        "CUDA: run decode eagerly instead of replaying captured graphs"
    )] = False
    disable_overlap_schedule: Annotated[bool, doc(
        "CUDA: read back step N's tokens before launching decode step N+1 (by default the launch "
        "overlaps the read-back)"
    )] = False
    cuda_graph_max_bs: Annotated[int | None, doc(
        "CUDA: largest decode batch replayed from a captured graph; no graphs with "
        "disable_cuda_graph or an attention backend that can't be captured",
        unset="min(512, max_running_requests)",
    )] = None
    gemv_max_batch: Annotated[int, doc(
        "CUDA: linear layers of inputs up to this many rows (batch-1 decode) may run the Triton "
        "GEMV instead of cuBLAS, where the device's measured table (gemv_tune) found it faster; "
        "0 turns it off"
    )] = 1
    random_seed: Annotated[int, doc("seed for weight init and sampling defaults")] = 0
    log_level: Annotated[str, doc(
        "logging level of the runtime's (and the server's) processes", choices=LOG_LEVELS,
        lowercase=True,
    )] = "info"
    init_new_token_ratio: Annotated[float, doc(
        "admission assumes each running request still emits this share of its max_new_tokens; "
        "the share decays while decoding goes well and resets after a retraction"
    )] = 0.7
    min_new_token_ratio: Annotated[float, doc(
        "the least share of max_new_tokens admission assumes a running request still emits"
    )] = 0.1
    new_token_ratio_decay: Annotated[float, doc(
        "how much the assumed share decays per decode step"
    )] = 0.001
    debug_check_integrity: Annotated[bool, doc(
        "check the KV accounting invariant after every step (tests); it always runs when idle"
    )] = False
    grammar_backend: Annotated[str, doc(
        "library that compiles regex / json_schema / ebnf constraints (outlines: regex and "
        "json_schema only)", registry=GRAMMAR_BACKENDS,
    )] = "xgrammar"
    disable_jump_forward: Annotated[bool, doc(
        "decode text a grammar forces token by token instead of appending it without model "
        "steps (jump-forward needs the radix cache)"
    )] = False
    stream_interval: Annotated[int, doc(
        "send a streamed request's new tokens every N generated tokens (and when it finishes); "
        "a request that is not streamed gets one output, when it finishes"
    )] = 1
    speculative_algorithm: Annotated[str | None, doc(
        "speculative decoding: ngram drafts tokens by prompt lookup (the request's own earlier "
        "tokens) and verifies them in one forward pass; greedy requests only, any case",
        registry=SPECULATIVE_ALGORITHMS, lowercase=True, unset="off",
    )] = None
    speculative_num_draft_tokens: Annotated[int, doc(
        "most draft tokens verified per request and step (each step emits 1 to this + 1)"
    )] = 12
    speculative_ngram_min_match_window_size: Annotated[int, doc(
        "ngram: shortest tail of the history looked up (longer ones are tried first)"
    )] = 3
    speculative_ngram_max_match_window_size: Annotated[int, doc(
        "ngram: longest tail of the history looked up"
    )] = 4
    tp_size: Annotated[int, doc(
        "tensor-parallel degree: one scheduler process per rank, spread evenly over nnodes"
    )] = 1
    nnodes: Annotated[int, doc("machines the tp_size ranks span, tp_size/nnodes ranks each")] = 1
    node_rank: Annotated[int, doc(
        "this machine's index among nnodes; only node 0 serves HTTP"
    )] = 0
    dist_init_addr: Annotated[str | None, doc(
        "where the ranks meet: HOST:PORT on node 0; set with tp_size=1 it still joins a "
        "one-rank group", metavar="HOST:PORT", unset="a free local port (nnodes == 1 only)",
    )] = None
    dist_timeout: Annotated[float | None, doc(
        "seconds a collective may wait for the other ranks", unset="torch.distributed's default"
    )] = None
    rank_heartbeat_timeout: Annotated[float, doc(
        "seconds a rank process may go without a heartbeat before it counts as hung"
    )] = 20.0
    skip_tokenizer_init: Annotated[bool, doc(
        "load no tokenizer anywhere: prompts must be input_ids and outputs carry output_ids "
        "with no text (stop strings and grammars, which need one, are refused)"
    )] = False
    is_embedding: Annotated[bool, doc(
        "serve an embedding model: prompts are encoded (pooled hidden states, L2 normalised; "
        "pooled as the model folder's 1_Pooling/config.json of sentence transformers says, "
        "else the last token's), nothing is generated"
    )] = False

    def __post_init__(self) -> None:
        fold_case(self)  # "WARNING" as logging spells it, "NGRAM" as SGLang's docs do
        self.validate()

    def validate(self) -> None:
        def bad(field: str, value: Any, allowed: str) -> ValueError:
            return ValueError(f"invalid {field}={value!r}: expected {allowed}")

        if not 0.0 < self.mem_fraction_static <= 1.0:
            raise bad("mem_fraction_static", self.mem_fraction_static, "a number in (0, 1]")
        # dtype, load_format, log_level and the plug-in names (registries: nothing is loaded)
        check_choices(self)
        for name in ("max_total_tokens", "context_length", "max_running_requests",
                     "chunked_prefill_size", "cuda_graph_max_bs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise bad(name, value, "a positive integer")
        for name in ("max_prefill_tokens", "stream_interval"):
            if getattr(self, name) < 1:
                raise bad(name, getattr(self, name), "a positive integer")
        if not 0 <= self.gemv_max_batch <= 8:
            raise bad("gemv_max_batch", self.gemv_max_batch, "an integer in [0, 8]")
        self._validate_parallel(bad)
        self._validate_speculative(bad)

    def _validate_speculative(self, bad: Any) -> None:
        if not 1 <= self.speculative_num_draft_tokens <= MAX_DRAFT_TOKENS:
            raise bad("speculative_num_draft_tokens", self.speculative_num_draft_tokens,
                      f"an integer in [1, {MAX_DRAFT_TOKENS}]")
        lo = self.speculative_ngram_min_match_window_size
        hi = self.speculative_ngram_max_match_window_size
        if lo < 1:
            raise bad("speculative_ngram_min_match_window_size", lo, "a positive integer")
        if hi < lo:
            raise bad("speculative_ngram_max_match_window_size", hi,
                      f">= speculative_ngram_min_match_window_size={lo}")

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
            if isinstance(e.__cause__, UnknownPluginError):  # keep its kind, name and choices
                raise e.__cause__ from None
            raise ValueError(f"invalid runtime argument: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)
