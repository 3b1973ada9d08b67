"""`--attention-reduce-in-fp32`: the RuntimeArgs flag reaches both attention backends, and in
fp16 it moves their outputs toward the fp32 result (torch: scores, softmax and weighted sum in
fp32; Triton: split-KV decode partials in fp32). Also per-layer windows and soft-capping given
at call time on the torch backend, against a dense reference."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import transformers

from sglang.runtime.attention.base import create_backend
from sglang.runtime.builder import build_runtime
from sglang.runtime.config import RuntimeArgs

sys.path.insert(0, str(Path(__file__).parent))
from batch_helpers import ToyKV  # noqa: E402
from tiny_models import save_tiny_model  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 4, 2, 16
GEOMETRY = SimpleNamespace(
    hidden_size=HEADS * HEAD_DIM, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
    num_hidden_layers=1, head_dim=HEAD_DIM,
)
LENS = [37, 9, 60]


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_flag_reaches_the_backend(backend: str, tmp_path: Path) -> None:
    config = transformers.Gemma2Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
    )
    config.architectures = ["Gemma2ForCausalLM"]
    folder = save_tiny_model(config, tmp_path, with_tokenizer=False)
    for flag in (False, True):
        args = RuntimeArgs(model_path=folder, skip_tokenizer_init=True, device="cpu",
                           dtype="float32", attention_backend=backend,
                           attention_reduce_in_fp32=flag)
        attn = build_runtime(args).scheduler.runner.attn_backend
        assert attn.reduce_in_fp32 is flag


def _attend(
    backend: Any, dtype: torch.dtype, qkv: list[torch.Tensor], decode: bool, **layer: Any
) -> torch.Tensor:
    """Prefill LENS (one layer), then optionally one decode step; the last call's output."""
    kv = ToyKV(GEOMETRY, max_reqs=3, max_context=64, dtype=dtype)
    q, k, v = (t.to(dtype) for t in qkv)
    rows = [0, 1, 2]
    batch = kv.extend(rows, [[0] * n for n in LENS])
    n = batch.num_tokens
    backend.prepare(batch)
    out = backend.forward(q[:n], k[:n], v[:n], 0, HEAD_DIM**-0.5, batch, **layer)
    if not decode:
        return out.float()
    batch = kv.decode(rows, [0, 0, 0])
    backend.prepare(batch)
    return backend.forward(q[n:], k[n:], v[n:], 0, HEAD_DIM**-0.5, batch, **layer).float()


def _qkv(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    total = sum(LENS) + len(LENS)
    # Wide score ranges so low-precision softmax sums lose digits.
    return [torch.randn(total, h, HEAD_DIM, generator=g) * s
            for h, s in ((HEADS, 2.0), (KV_HEADS, 2.0), (KV_HEADS, 1.0))]


@pytest.mark.parametrize(
    "backend,decode,kwargs",
    [
        ("torch", False, {}),
        ("torch", True, {}),
        ("triton", True, {"num_kv_splits": 4}),
    ],
)
def test_fp16_moves_toward_fp32(backend: str, decode: bool, kwargs: dict[str, Any]) -> None:
    qkv = _qkv(0)
    # The fp32 reference sees the same fp16-rounded inputs.
    rounded = [t.half().float() for t in qkv]
    want = _attend(create_backend("torch"), torch.float32, rounded, decode)
    errs = {}
    for flag in (False, True):
        got = _attend(create_backend(backend, reduce_in_fp32=flag, **kwargs), torch.float16,
                      qkv, decode)
        errs[flag] = (got - want).abs().mean().item()
    assert errs[True] < errs[False], errs


@pytest.mark.parametrize("decode", [False, True])
@pytest.mark.parametrize("window,cap", [(5, 0.0), (None, 1.5), (7, 2.5)])
def test_layer_window_and_cap_match_dense_reference(
    decode: bool, window: int | None, cap: float
) -> None:
    qkv = _qkv(1)
    layer = dict(sliding_window=window, logit_cap=cap)
    got = _attend(create_backend("torch"), torch.float32, qkv, decode, **layer)
    q, k, v = qkv
    start, outs = 0, []
    for n in LENS:  # every request's keys: its prompt, then its decode token
        idx = list(range(start, start + n))
        if decode:
            idx.append(sum(LENS) + len(outs))
        qi, ki, vi = q[idx], k[idx].repeat_interleave(2, 1), v[idx].repeat_interleave(2, 1)
        s = torch.einsum("qhd,khd->hqk", qi, ki) * HEAD_DIM**-0.5
        if cap:
            s = cap * torch.tanh(s / cap)
        pos = torch.arange(len(idx))
        mask = pos[None, :] <= pos[:, None]
        if window:
            mask &= pos[None, :] > pos[:, None] - window
        o = torch.einsum("hqk,khd->qhd", s.masked_fill(~mask, float("-inf")).softmax(-1), vi)
        outs.append(o[-1:] if decode else o)
        start += n
    torch.testing.assert_close(got, torch.cat(outs), atol=1e-5, rtol=1e-5)
