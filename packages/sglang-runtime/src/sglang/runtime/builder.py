"""Wires a scheduler together: model, KV pool sized from memory, cache, runner."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from sglang.runtime.attention.base import create_backend
from sglang.runtime.cache.allocator import SlotAllocator
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.cache.radix_cache import RadixCache
from sglang.runtime.cache.req_to_token import ReqToTokenPool
from sglang.runtime.config import RuntimeArgs
from sglang.runtime.executor.model_runner import ModelRunner
from sglang.runtime.loading.loader import load_model
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
    config: Any
    device: torch.device
    context_len: int


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use device='cpu'")
    return torch.device(name)


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
    return max(int(budget // bytes_per_slot), 1)


def _eos_ids(config: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return ids


def build_runtime(args: RuntimeArgs) -> Runtime:
    logging.getLogger("sglang").setLevel(args.log_level.upper())
    torch.manual_seed(args.random_seed)
    device = resolve_device(args.device)
    loaded = load_model(
        args.model_path, load_format=args.load_format, dtype=args.dtype, device=device,
        tokenizer_path=args.tokenizer_path, seed=args.random_seed,
    )
    cfg = loaded.config
    context_len = args.context_length or int(getattr(cfg, "max_position_embeddings", 4096))
    dtype = next(loaded.model.parameters()).dtype
    kv_heads = cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_slot = KVPool.bytes_per_slot(cfg.num_hidden_layers, kv_heads, head_dim, dtype)
    num_slots = _kv_slots(args, device, per_slot)
    kv_pool = KVPool(num_slots, cfg.num_hidden_layers, kv_heads, head_dim, dtype, device)
    logger.info(
        "weights %.2f GiB; KV pool %d tokens (%.2f GiB)",
        loaded.weight_bytes / 2**30, num_slots, num_slots * per_slot / 2**30,
    )
    max_running = args.max_running_requests or DEFAULT_MAX_RUNNING.get(device.type, 256)
    allocator = SlotAllocator(num_slots)
    kv = KVManager(
        kv_pool, allocator, ReqToTokenPool(max_running, context_len + 1, device),
        RadixCache(allocator, disabled=args.disable_radix_cache),
    )
    backend_name = "torch" if args.attention_backend == "auto" else args.attention_backend
    backend = create_backend(backend_name, sliding_window=getattr(loaded.model, "sliding_window", None))
    runner = ModelRunner(loaded.model, kv_pool, backend)
    vocab = int(cfg.vocab_size)
    output = OutputProcessor(loaded.tokenizer, _eos_ids(cfg, loaded.tokenizer), vocab)
    chunk = min(
        args.chunked_prefill_size or DEFAULT_CHUNK.get(device.type, 4096), args.max_prefill_tokens
    )
    scheduler = Scheduler(args, runner, kv, output, context_len, max_running, chunk)
    return Runtime(args, scheduler, loaded.tokenizer, cfg, device, context_len)
