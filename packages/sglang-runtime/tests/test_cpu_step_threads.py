"""On the CPU, steps of at most CPU_SMALL_STEP_TOKENS tokens run on one intra-op thread and
larger ones on the configured count (model_runner.py says why)."""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from batch_helpers import ToyKV, make_runner
from quant_writers import VOCAB, tiny_llama_config
from tiny_models import save_hf_model, save_word_tokenizer

from sglang.runtime.executor.model_runner import CPU_SMALL_STEP_TOKENS
from sglang.runtime.loading.loader import load_model


def _tiny_runner(tmp_path: Path) -> tuple[object, ToyKV]:
    save_hf_model(tiny_llama_config(), tmp_path)
    save_word_tokenizer(VOCAB, tmp_path)
    loaded = load_model(str(tmp_path), dtype="float32")
    kv = ToyKV(loaded.config, dtype=torch.float32, device="cpu")
    return make_runner(loaded.model, kv), kv


def test_small_steps_run_on_one_thread(tmp_path: Path) -> None:
    configured = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        runner, kv = _tiny_runner(tmp_path)
        big = CPU_SMALL_STEP_TOKENS + 1
        runner.forward(kv.extend([0], [list(range(1, big + 1))]))
        assert torch.get_num_threads() == 2
        runner.forward(kv.decode([0], [5]))
        assert torch.get_num_threads() == 1
        runner.forward(kv.extend([1], [list(range(1, big + 1))]))
        assert torch.get_num_threads() == 2  # restored for the large step
        runner.forward(kv.decode([1], [5]))
        assert torch.get_num_threads() == 1
        runner.restore_cpu_threads()  # the engine's shutdown
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(configured)


def _in_new_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_restore_reaches_threads_started_later(tmp_path: Path) -> None:
    # The engine steps on its scheduler thread and restores from its own: a small last step
    # must not leave the next engine's scheduler thread (started later) at one thread.
    configured = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        runner, kv = _tiny_runner(tmp_path)
        big = CPU_SMALL_STEP_TOKENS + 1
        _in_new_thread(lambda: runner.forward(kv.extend([0], [list(range(1, big + 1))])))
        _in_new_thread(lambda: runner.forward(kv.decode([0], [5])))  # leaves 1 behind
        assert _in_new_thread(torch.get_num_threads) == 1
        runner.restore_cpu_threads()
        assert _in_new_thread(torch.get_num_threads) == 2
    finally:
        torch.set_num_threads(configured)
