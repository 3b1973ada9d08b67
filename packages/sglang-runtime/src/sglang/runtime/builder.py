"""Wires a scheduler together: model, KV pool sized from memory, cache, runner.

Under tensor parallelism every rank process builds its own (joining the group first, so the
layers see their rank): its shard of the model, a KV pool for its heads whose size all ranks
agree on (the minimum), and an output processor that takes rank 0's sampled tokens."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from sglang.runtime.attention.base import create_backend, resolve_backend_name
from sglang.runtime.cache.allocator import SlotAllocator
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.cache.kv_quant import check_kv_support, resolve_kv_dtype
from sglang.runtime.cache.radix_cache import RadixCache
from sglang.runtime.cache.req_to_token import ReqToTokenPool
from sglang.runtime.config import RuntimeArgs
from sglang.runtime.distributed import all_reduce_cpu, init_distributed
from sglang.runtime.executor.model_runner import ModelRunner
from sglang.runtime.grammar.manager import GrammarManager
from sglang.runtime.loading.loader import load_model
from sglang.runtime.models.config import ModelConfig
from sglang.runtime.pooling import resolve_pooling, use_hidden_states
from sglang.runtime.procs.child import scheduler_threads
from sglang.runtime.procs.tp_output import TPOutputProcessor
from sglang.runtime.scheduler.kv_manager import KVManager
from sglang.runtime.scheduler.output import OutputProcessor
from sglang.runtime.scheduler.scheduler import Scheduler

logger = logging.getLogger("sglang.runtime")

# Host memory for the KV pool on CPU: a share of what is free, capped so a laptop stays usable.
CPU_KV_SHARE = 0.3
CPU_KV_CAP_BYTES = 4 << 30
# Device memory kept out of the KV pool on CUDA for activations and the sampler.
CUDA_ACTIVATION_RESERVE = 2 << 30
DEFAULT_MAX_RUNNING = {"cpu": 256, "cuda": 1024}
DEFAULT_CHUNK = {"cpu": 4096, "cuda": 8192}


@dataclass
class Runtime:
    args: RuntimeArgs
    scheduler: Scheduler
    tokenizer: Any
    config: ModelConfig
    device: torch.device
    context_len: int
    tp_rank: int = 0
    tp_size: int = 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`local_rank` is the rank's index on its node: rank processes of one node take
    consecutive GPUs (from N for "cuda:N")."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use device='cpu'")
    device = torch.device(name)
    if device.type == "cuda":
        return torch.device("cuda", (device.index or 0) + local_rank)
    return device


def _join_tp_group(args: RuntimeArgs, tp_rank: int, device: torch.device) -> None:
    local_ranks = args.ranks_per_node
    if device.type == "cpu" and local_ranks > 1:
        # Ranks of one node share its cores (ranks started as processes already have this from
        # their environment; in-process ranks do not).
        torch.set_num_threads(scheduler_threads(local_ranks))
    if args.dist_init_addr is None:
        raise ValueError("tensor parallelism needs dist_init_addr (the launcher picks one)")
    init_distributed(tp_rank, args.tp_size, args.dist_init_addr, device, args.dist_timeout)


def _kv_slots(args: RuntimeArgs, device: torch.device, bytes_per_slot: int) -> int:
    if args.max_total_tokens is not None:
        return args.max_total_tokens
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        budget = total * args.mem_fraction_static - (total - free) - CUDA_ACTIVATION_RESERVE
        if budget <= 0:
            raise MemoryError(
                f"the model leaves no room for the KV cache: {(total - free) / 2**30:.1f} GiB in "
                f"use of {total / 2**30:.1f} GiB with mem_fraction_static="
                f"{args.mem_fraction_static}; raise it or use a smaller model"
            )
    else:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        budget = min(avail * CPU_KV_SHARE * args.mem_fraction_static, CPU_KV_CAP_BYTES)
        budget /= args.ranks_per_node  # the node's ranks share its memory
    return max(int(budget // bytes_per_slot), 1)


def _eos_ids(config: ModelConfig, tokenizer: Any) -> set[int]:
    ids = set(config.eos_token_ids)
    value = getattr(tokenizer, "eos_token_id", None)
    if isinstance(value, int):
        ids.add(value)
    return ids


def build_runtime(args: RuntimeArgs, tp_rank: int = 0) -> Runtime:
    logging.getLogger("sglang").setLevel(args.log_level.upper())
    torch.manual_seed(args.random_seed)
    device = resolve_device(args.device, tp_rank % args.ranks_per_node)
    if args.distributed:
        _join_tp_group(args, tp_rank, device)
    loaded = load_model(
        args.model_path, load_format=args.load_format, dtype=args.dtype, device=device,
        tokenizer_path=args.tokenizer_path, seed=args.random_seed,
        skip_tokenizer=args.skip_tokenizer_init, quantization=args.quantization,
        dequantize_gguf=args.dequantize_gguf,
        cpu_int8_activations=args.cpu_int8_activations,
    )
    cfg = loaded.model_config
    context_len = args.context_length or cfg.context_len
    spec = loaded.model.kv_cache_spec()
    backend_name = resolve_backend_name(args.attention_backend, device)
    kv_dtype = resolve_kv_dtype(args.kv_cache_dtype, spec.dtype)
    check_kv_support(kv_dtype, backend_name, device)
    per_slot = KVPool.bytes_per_slot(spec.num_layers, spec.num_kv_heads, spec.head_dim, kv_dtype)
    # Every rank holds every token: the smallest rank's pool bounds them all.
    num_slots = all_reduce_cpu([_kv_slots(args, device, per_slot)], "min")[0]
    k_scales, v_scales = loaded.kv_scales.per_layer(spec.num_layers)
    kv_pool = KVPool(
        num_slots, spec.num_layers, spec.num_kv_heads, spec.head_dim, kv_dtype, device,
        k_scales, v_scales,
    )
    logger.info(
        "weights %.2f GiB; KV pool %d tokens (%.2f GiB, %s%s)",
        loaded.weight_bytes / 2**30, num_slots, num_slots * per_slot / 2**30,
        str(kv_dtype).removeprefix("torch."),
        ", scales from the checkpoint" if kv_pool.quantized and loaded.kv_scales else "",
    )
    max_running = args.max_running_requests or DEFAULT_MAX_RUNNING.get(device.type, 256)
    allocator = SlotAllocator(num_slots)
    kv = KVManager(
        kv_pool, allocator, ReqToTokenPool(max_running, context_len + 1, device),
        RadixCache(allocator, disabled=args.disable_radix_cache),
    )
    backend = create_backend(
        backend_name,
        sliding_window=spec.sliding_window,
        reduce_in_fp32=args.attention_reduce_in_fp32,
        fuse_decode_rope=args.fuse_decode_rope and args.speculative_algorithm is None,
    )
    runner = ModelRunner(loaded.model, kv_pool, backend, args.gemv_max_batch)
    vocab = cfg.vocab_size
    output_cls = TPOutputProcessor if args.tp_size > 1 else OutputProcessor
    eos_ids = _eos_ids(cfg, loaded.tokenizer)
    output = output_cls(loaded.tokenizer, eos_ids, vocab, args.stream_interval)
    grammar = GrammarManager(
        args.grammar_backend, loaded.tokenizer, vocab, eos_ids,
        # Jump-forward re-prefills through the radix cache; without it every jump would
        # recompute the whole sequence.
        jump_forward=not (args.disable_jump_forward or args.disable_radix_cache),
        # Tensor-parallel ranks must admit a request in the same step: no racing compiles.
        synchronous=args.tp_size > 1,
    )
    chunk = min(
        args.chunked_prefill_size or DEFAULT_CHUNK.get(device.type, 4096), args.max_prefill_tokens
    )
    pooling = None
    if args.is_embedding:
        pooling = resolve_pooling(args.model_path)
        use_hidden_states(loaded.model)
        logger.info("embedding model: %s pooling", pooling)
    # Embedding models never decode: no decode graphs to capture.
    if device.type == "cuda" and not args.disable_cuda_graph and pooling is None:
        runner.enable_cuda_graphs(kv.req_pool.table, min(args.cuda_graph_max_bs or 512, max_running))
    scheduler = Scheduler(args, runner, kv, output, context_len, max_running, chunk, grammar,
                          pooling)
    return Runtime(args, scheduler, loaded.tokenizer, cfg, device, context_len, tp_rank,
                   args.tp_size)
