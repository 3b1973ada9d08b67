"""Tensor-parallel test helpers: run a function on N gloo ranks in spawned processes.

Kept out of the test modules so spawned children can import it (pytest imports test files in
importlib mode, under names a child could not import).
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from batch_helpers import ToyKV, make_runner  # noqa: E402

from sglang.runtime.distributed import (  # noqa: E402
    destroy_distributed,
    get_tp_rank,
    get_tp_size,
    init_distributed,
)
from sglang.runtime.layers.sharding import HeadSplit  # noqa: E402
from sglang.runtime.loading.loader import load_model  # noqa: E402

STEPS_TIMEOUT_S = 240


def free_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _rank_main(rank: int, world: int, addr: str, fn: Any, args: tuple, out: str) -> None:
    torch.set_num_threads(1)
    try:
        init_distributed(rank, world, addr, torch.device("cpu"), timeout_s=120)
        result = fn(*args)
        if rank == 0:
            torch.save(result, out)
        # Every rank past its last collective before any tears down its gloo pairs.
        torch.distributed.barrier()
        Path(f"{out}.done{rank}").touch()
        destroy_distributed()
    except BaseException:
        traceback.print_exc()
        os._exit(1)


def run_on_ranks(world: int, fn: Any, *args: Any, tmp: Path) -> Any:
    """fn(*args) on `world` gloo ranks at once; rank 0's result."""
    ctx = multiprocessing.get_context("spawn")
    addr, out = free_addr(), str(tmp / f"rank0-{world}.pt")
    procs = [ctx.Process(target=_rank_main, args=(r, world, addr, fn, args, out))
             for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(STEPS_TIMEOUT_S)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    # Even after the barrier, a rank whose peer closed its gloo pairs first can abort while
    # tearing its own down ("terminate called without an active exception": seen in two full
    # CI runs, never with these tests alone). Such a rank had finished everything the tests
    # check; an abort before its marker, or any other failure, still fails.
    torn_down = [Path(f"{out}.done{r}").exists() and c == -signal.SIGABRT
                 for r, c in enumerate(codes)]
    assert all(c == 0 or ok for c, ok in zip(codes, torn_down, strict=True)), \
        f"rank exit codes {codes}"
    return torch.load(out)


def local_kv(config: Any) -> ToyKV:
    """A ToyKV holding this rank's KV heads."""
    cfg = copy.copy(config)
    heads = HeadSplit.of(config.num_attention_heads, config.num_key_value_heads,
                         get_tp_rank(), get_tp_size())
    if getattr(cfg, "head_dim", None) is None:
        cfg.head_dim = config.hidden_size // config.num_attention_heads
    cfg.num_key_value_heads = heads.num_kv_heads
    return ToyKV(cfg)


def model_logits(folder: str, load_format: str = "auto", vocab: int = 0) -> list[torch.Tensor]:
    """Logits of a ragged prefill (every position), an extend over a cached prefix and three
    decode steps, on this rank's shard of the model at `folder`."""
    loaded = load_model(folder, load_format=load_format, dtype="float32")
    kv = local_kv(loaded.config)
    runner = make_runner(loaded.model, kv, sliding_window=getattr(loaded.model, "sliding_window",
                                                                  None))
    g = torch.Generator().manual_seed(0)
    vocab = vocab or int(loaded.config.vocab_size)

    def ids(n: int) -> list[int]:
        return torch.randint(0, vocab, (n,), generator=g).tolist()

    rows = [0, 1, 2]
    out = [runner.forward(kv.extend(rows, [ids(7), ids(12), ids(1)], all_logits=True))]
    out.append(runner.forward(kv.extend(rows, [ids(5), ids(1), ids(9)], all_logits=True)))
    for _ in range(3):
        out.append(runner.forward(kv.decode(rows, ids(3))))
    return out


def many_model_logits(cases: list[tuple[str, str, str]]) -> dict[str, list[torch.Tensor]]:
    return {name: model_logits(folder, fmt) for name, folder, fmt in cases}
