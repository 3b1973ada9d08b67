"""Tiny random MoE configs (Mixtral, Qwen2-MoE, Qwen3-MoE, DBRX) and a greedy-decoding helper shared
by the MoE parity and tensor-parallel tests (a module, so spawned ranks can import it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from batch_helpers import ToyKV, make_runner  # noqa: E402

VOCAB = 160
# intermediate 48 / moe 40 over 2 ranks: even splits; the shared expert's 36 too.
BASE: dict[str, Any] = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=48, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
)
QWEN_MOE: dict[str, Any] = dict(num_experts=6, num_experts_per_tok=2, moe_intermediate_size=40)


def moe_configs() -> dict[str, Any]:
    import transformers

    return {
        "mixtral": lambda: transformers.MixtralConfig(
            **BASE, num_local_experts=4, num_experts_per_tok=2
        ),
        "qwen2_moe": lambda: transformers.Qwen2MoeConfig(
            **BASE, **QWEN_MOE, shared_expert_intermediate_size=36, norm_topk_prob=False,
            decoder_sparse_step=1, mlp_only_layers=[1],
        ),
        "qwen3_moe": lambda: transformers.Qwen3MoeConfig(
            **BASE, **QWEN_MOE, head_dim=32, norm_topk_prob=True, decoder_sparse_step=2,
        ),
        # clip_qkv 1.0 clips a good share of the O(1) q/k/v values, so the clamp is exercised.
        "dbrx": lambda: transformers.DbrxConfig(
            d_model=64, n_heads=4, n_layers=3, vocab_size=VOCAB, max_seq_len=256,
            attn_config=dict(kv_n_heads=2, clip_qkv=1.0, rope_theta=10000.0),
            ffn_config=dict(ffn_hidden_size=40, moe_num_experts=6, moe_top_k=3),
        ),
    }


def greedy_tokens(model: Any, config: Any, prompts: list[list[int]], steps: int) -> list[list[int]]:
    """`steps` greedy tokens per prompt, decoded as one batch on our runner."""
    kv = ToyKV(config)
    runner = make_runner(model, kv, sliding_window=getattr(model, "sliding_window", None))
    rows = list(range(len(prompts)))
    logits = runner.forward(kv.extend(rows, prompts))
    out: list[list[int]] = [[] for _ in prompts]
    for _ in range(steps):
        nxt = logits.argmax(-1).tolist()
        for row, tok in zip(out, nxt, strict=True):
            row.append(tok)
        logits = runner.forward(kv.decode(rows, nxt))
    return out


def rank_results(cases: list[tuple[str, str, str]]) -> dict[str, Any]:
    """On this rank's shard: each case's logits (tp_workers.model_logits) and 16 greedy tokens
    for three prompts."""
    from tp_workers import local_kv, model_logits

    from sglang.runtime.loading.loader import load_model

    out: dict[str, Any] = {}
    for name, folder, fmt in cases:
        loaded = load_model(folder, load_format=fmt, dtype="float32")
        kv = local_kv(loaded.config)
        runner = make_runner(loaded.model, kv, sliding_window=None)
        prompts = [[3, 14, 15, 92, 65], [35, 89], [79, 32, 38, 46, 26, 43, 38, 32, 79]]
        rows = list(range(len(prompts)))
        logits = runner.forward(kv.extend(rows, prompts))
        tokens: list[list[int]] = [[] for _ in prompts]
        for _ in range(16):
            nxt = logits.argmax(-1).tolist()
            for row, tok in zip(tokens, nxt, strict=True):
                row.append(tok)
            logits = runner.forward(kv.decode(rows, nxt))
        out[name] = (model_logits(folder, fmt), tokens)
    return out
