"""Writes a tiny HF MoE folder (Mixtral, Qwen2-MoE, Qwen3-MoE) as a GGUF file laid out the way
llama.cpp's converter lays it out: its tensor names, experts stacked per layer, q/k rows
permuted for the `llama` architecture, float32 tensors, a llama-style token list."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

# HF model_type -> GGUF architecture.
ARCH = {"mixtral": "llama", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe"}
_GLOBAL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
_LAYER = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "mlp.gate": "ffn_gate_inp", "block_sparse_moe.gate": "ffn_gate_inp",
    "mlp.shared_expert_gate": "ffn_gate_inp_shexp", "mlp.shared_expert.gate_proj": "ffn_gate_shexp",
    "mlp.shared_expert.up_proj": "ffn_up_shexp", "mlp.shared_expert.down_proj": "ffn_down_shexp",
}
_EXPERT = {"w1": "ffn_gate_exps", "gate_proj": "ffn_gate_exps", "w3": "ffn_up_exps",
           "up_proj": "ffn_up_exps", "w2": "ffn_down_exps", "down_proj": "ffn_down_exps"}
_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)")
_EXPERT_RE = re.compile(r"(?:mlp|block_sparse_moe)\.experts\.(\d+)\.(\w+)")


def _permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    # llama.cpp: rows (head, half, j) -> (head, j, half).
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(
    folder: str | Path, out: str | Path, per_expert: bool = False, q8_experts: bool = False
) -> str:
    """`per_expert`: one tensor per expert (blk.N.ffn_gate.E.weight), as llama.cpp wrote
    Mixtral before it stacked them. `q8_experts`: stacked expert tensors whose rows split into
    32-value blocks are stored Q8_0-quantized."""
    import gguf
    import transformers
    from safetensors.torch import load_file

    config: Any = transformers.AutoConfig.from_pretrained(folder)
    arch = ARCH[config.model_type]
    tensors = load_file(str(Path(folder) / "model.safetensors"))
    writer = gguf.GGUFWriter(str(out), arch)
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_key_length(getattr(config, "head_dim", None) or config.hidden_size // heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_expert_used_count(config.num_experts_per_tok)
    if arch == "llama":
        writer.add_expert_count(config.num_local_experts)
    else:
        writer.add_expert_count(config.num_experts)
        writer.add_expert_feed_forward_length(config.moe_intermediate_size)
        writer.add_expert_weights_norm(bool(config.norm_topk_prob))
        if getattr(config, "shared_expert_intermediate_size", None):
            writer.add_expert_shared_feed_forward_length(config.shared_expert_intermediate_size)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "<s>", "</s>"] + [f"\u2581t{i}" for i in range(3, config.vocab_size)])
    writer.add_token_scores([0.0] * config.vocab_size)
    writer.add_unk_token_id(0)
    writer.add_token_types([2, 3, 3] + [1] * (config.vocab_size - 3))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    stacks: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    for name, t in sorted(tensors.items()):
        match = _LAYER_RE.fullmatch(name)
        if match is None:
            base, _, suffix = name.rpartition(".")
            writer.add_tensor(f"{_GLOBAL[base]}.{suffix}", t.float().numpy())
            continue
        layer, module, suffix = match.groups()
        expert = _EXPERT_RE.fullmatch(module)
        if expert:
            stacks.setdefault((layer, _EXPERT[expert.group(2)]), {})[int(expert.group(1))] = t
            continue
        if module == "mlp.shared_expert_gate":
            t = t.reshape(-1)  # llama.cpp stores it as a vector
        if arch == "llama" and module in ("self_attn.q_proj", "self_attn.k_proj"):
            t = _permute(t, heads if module.endswith("q_proj") else kv)
        writer.add_tensor(f"blk.{layer}.{_LAYER[module]}.{suffix}", t.float().numpy())
    for (layer, kind), experts in sorted(stacks.items()):
        if per_expert:
            for e, t in sorted(experts.items()):
                writer.add_tensor(f"blk.{layer}.{kind.removesuffix('_exps')}.{e}.weight",
                                  t.float().numpy())
            continue
        stacked = np.ascontiguousarray(torch.stack([experts[e] for e in sorted(experts)]).float().numpy())
        qtype = gguf.GGMLQuantizationType.Q8_0
        if q8_experts and stacked.shape[-1] % 32 == 0:
            writer.add_tensor(f"blk.{layer}.{kind}.weight", gguf.quants.quantize(stacked, qtype),
                              raw_dtype=qtype)
        else:
            writer.add_tensor(f"blk.{layer}.{kind}.weight", stacked)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(out)
