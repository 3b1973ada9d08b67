"""Roofline arithmetic for the GPU suite: bytes and FLOPs of a Llama-shaped model (no torch).

Every bound here is a *ceiling*: it assumes the measured copy bandwidth and matmul rate are
reached by every kernel, ignores launch gaps, and (unless stated) ignores communication. Each
function returns its numbers together with the formula it used, so the suite can print both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TB = 1e12


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    # Mixture of experts (Mixtral, Qwen-MoE): `intermediate` is then each expert's; 0 = dense.
    experts: int = 0
    top_k: int = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ModelShape:
        heads = int(cfg["num_attention_heads"])
        experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 0)
        inter = cfg.get("moe_intermediate_size") if experts else None
        return cls(
            layers=int(cfg["num_hidden_layers"]), hidden=int(cfg["hidden_size"]), heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // heads),
            intermediate=int(inter or cfg["intermediate_size"]), vocab=int(cfg["vocab_size"]),
            tied=bool(cfg.get("tie_word_embeddings", False)),
            experts=experts, top_k=int(cfg.get("num_experts_per_tok") or 0) if experts else 0,
        )

    # ---- parameter counts ------------------------------------------------------------------
    @property
    def layer_params(self) -> int:
        """One decoder layer: q, k, v, o projections, gate/up/down (every expert's, and the
        router), two RMSNorm scales."""
        return self.layer_active_params(self.experts or 1)

    def layer_active_params(self, experts_touched: float) -> int:
        """A layer's parameters when `experts_touched` experts of a MoE layer are used (dense:
        the whole MLP, whatever the argument)."""
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attn = self.hidden * (q_out + 2 * kv_out) + q_out * self.hidden
        expert = 3 * self.hidden * self.intermediate
        mlp = expert * experts_touched + self.hidden * self.experts if self.experts else expert
        return int(attn + mlp + 2 * self.hidden)

    def experts_touched(self, batch: int) -> float:
        """Expected distinct experts per MoE layer for `batch` tokens routed uniformly at random
        (top_k distinct experts each); batch 1 reads exactly top_k."""
        if not self.experts:
            return 1.0
        return self.experts * (1.0 - (1.0 - self.top_k / self.experts) ** batch)

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        return self.embed_params  # tied or not, the logits read a [vocab, hidden] matrix

    @property
    def total_params(self) -> int:
        untied_head = 0 if self.tied else self.lm_head_params
        return self.embed_params + self.layers * self.layer_params + self.hidden + untied_head

    def decode_weight_bytes(self, dtype_bytes: int, tp: int = 1, batch: int = 1) -> float:
        """Weights one decode step of `batch` tokens reads per GPU: every layer (of a MoE layer,
        only the experts the batch touches), the final norm and the lm_head. The embedding
        table is only gathered (one row per token), so an untied one is not counted. Tensor
        parallelism splits layers and lm_head over the GPUs."""
        layer = self.layer_active_params(self.experts_touched(batch))
        read = self.layers * layer + self.hidden + self.lm_head_params
        return read * dtype_bytes / tp

    def kv_bytes_per_token(self, dtype_bytes: int, tp: int = 1) -> float:
        """K and V of one token over all layers, per GPU (kv heads are replicated when tp
        exceeds their number)."""
        heads_per_gpu = max(self.kv_heads / tp, 1.0)
        return 2 * self.layers * heads_per_gpu * self.head_dim * dtype_bytes

    # ---- FLOPs --------------------------------------------------------------------------------
    def attention_flops(self, length: int, prefix: int = 0) -> float:
        """QK^T and PV of `length` new tokens attending causally to `prefix` cached tokens and
        to each other: 4 * heads * head_dim FLOPs per (query, key) pair, per layer."""
        pairs = length * prefix + length * (length + 1) / 2
        return 4.0 * self.layers * self.heads * self.head_dim * pairs

    def prefill_flops(self, length: int, prefix: int = 0) -> float:
        """Dense matmuls of every new token (through its top_k experts in MoE layers) plus the
        lm_head for the last one, plus attention."""
        per_token = self.layer_active_params(self.top_k) if self.experts else self.layer_params
        return (2.0 * self.layers * per_token * length + 2.0 * self.lm_head_params
                + self.attention_flops(length, prefix))


def si(x: float, unit: str, digits: int = 2) -> str:
    """3.35e12, "B/s" -> "3.35 TB/s"."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}f} {prefix}{unit}"
    return f"{x:.{digits}f} {unit}"


def fmt_bytes(x: float) -> str:
    return si(x, "B")


def decode_roofline(shape: ModelShape, dtype_bytes: int, bandwidth: float, prompt_len: int,
                    new_tokens: int, tp: int = 1, collective_s: float = 0.0) -> dict[str, Any]:
    """Batch-1 decode: each step reads the weights and the KV of the context so far (mean over
    the run). With tp > 1, each GPU reads its share and the step adds 2 all-reduces per layer
    plus one for the logits (collective_s each)."""
    weights = shape.decode_weight_bytes(dtype_bytes, tp)
    mean_ctx = prompt_len + (new_tokens - 1) / 2
    kv = shape.kv_bytes_per_token(dtype_bytes, tp) * mean_ctx
    n_coll = (2 * shape.layers + 1) if tp > 1 else 0
    step_s = (weights + kv) / bandwidth + n_coll * collective_s
    formula = (f"step = (W {fmt_bytes(weights)} + KV {fmt_bytes(kv)} [mean ctx {mean_ctx:.0f}])"
               f" / BW {si(bandwidth, 'B/s', 3)}")
    if tp > 1:
        formula += f" + {n_coll} all-reduces x {collective_s * 1e6:.1f} us"
    formula += f" = {step_s * 1e3:.3f} ms -> {1 / step_s:.1f} tok/s"
    return {"weight_bytes": weights, "kv_bytes": kv, "step_s": step_s, "tok_per_s": 1 / step_s,
            "tp": tp, "formula": formula}


def max_batch(kv_slots: int, max_running: int, mean_tokens_per_req: float) -> int:
    """Largest batch whose requests' whole KV (prompt + all outputs) fits in the pool."""
    return max(1, min(max_running, int(kv_slots // mean_tokens_per_req)))


def offline_ceiling(shape: ModelShape, dtype_bytes: int, bandwidth: float, matmul_rate: float,
                    input_lens: list[int], output_len: int, batch: int,
                    tp: int = 1) -> dict[str, Any]:
    """Time bound for an offline workload: prefill FLOPs at the matmul rate, plus decode bytes at
    the copy bandwidth -- the weights once per decode step (every step at `batch` requests) and
    each request's KV context once per step. Decode FLOPs are left out (see `decode_compute_s`,
    reported alongside) and so is communication: the result is an upper bound on tokens/s."""
    n = len(input_lens)
    prefill = sum(shape.prefill_flops(length) for length in input_lens) / tp
    decode_tokens = n * (output_len - 1)  # the first output token comes from the prefill
    steps = math.ceil(decode_tokens / batch)
    weights_step = shape.decode_weight_bytes(dtype_bytes, tp, batch)
    # Request i at its t-th decode step attends to input_len + t tokens.
    ctx_tokens = sum(length * (output_len - 1) + (output_len - 1) * output_len / 2
                     for length in input_lens)
    kv_read = ctx_tokens * shape.kv_bytes_per_token(dtype_bytes, tp)
    prefill_s = prefill / matmul_rate
    decode_s = (steps * weights_step + kv_read) / bandwidth
    total_s = prefill_s + decode_s
    out_tokens = n * output_len
    decode_flops = (2.0 * (shape.layers * shape.layer_params + shape.lm_head_params)
                    * decode_tokens + 4.0 * shape.layers * shape.heads * shape.head_dim
                    * ctx_tokens) / tp
    formula = (
        f"T = prefill {si(prefill, 'FLOP')}{' per GPU' if tp > 1 else ''}"
        f" / {si(matmul_rate, 'FLOP/s')}"
        f" [2 x {shape.layers * shape.layer_params / 1e9:.2f}B layer params x "
        f"{sum(input_lens)} prompt tokens + lm_head x {n} + causal attention"
        f"{f', / tp {tp}' if tp > 1 else ''}]"
        f" + (steps {steps} x W {fmt_bytes(weights_step)} + KV {fmt_bytes(kv_read)}"
        f" [{ctx_tokens / 1e6:.1f}M context tokens x "
        f"{fmt_bytes(shape.kv_bytes_per_token(dtype_bytes, tp))}]) / {si(bandwidth, 'B/s', 3)}"
        f" = {prefill_s:.1f} s + {decode_s:.1f} s = {total_s:.1f} s -> "
        f"{out_tokens / total_s:.0f} out tok/s (batch {batch}, {decode_tokens} decode tokens;"
        f" decode matmuls alone {decode_flops / matmul_rate:.1f} s at the matmul rate, left out"
        f" as they overlap the bytes)"
    )
    return {
        "prefill_flops": prefill, "decode_steps": steps, "batch": batch,
        "weight_bytes_per_step": weights_step, "kv_read_bytes": kv_read,
        "prefill_s": prefill_s, "decode_s": decode_s, "total_s": total_s,
        "tok_per_s": out_tokens / total_s, "decode_compute_s": decode_flops / matmul_rate,
        "formula": formula,
    }
