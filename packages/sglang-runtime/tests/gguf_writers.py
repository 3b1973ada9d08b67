"""Writes tiny GGUF files the way llama.cpp's convert script lays them out, from an HF model's
state dict (own name tables, independent of the loader's): `llama` with permuted q/k rows and
a `rope_freqs` tensor for llama3 rope, `qwen2`, `qwen3`, `phi3` (fused qkv and gate/up,
longrope factor tensors), plus a small byte-level BPE tokenizer."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAYER = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm", "self_attn.qkv_proj": "attn_qkv",
    "mlp.gate_up_proj": "ffn_up",
}
GLOBAL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
# Gemma 2/3 sandwich norms: llama.cpp's names differ from Llama's for the same HF ones.
GEMMA_LAYER = {
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
}
BOS, EOS = 158, 159
# fp16 d of random K-quant blocks: weights of about 1 / sqrt(256), like save_hf_model's.
K_MAGNITUDE = {"Q4_K": 2.5e-4, "Q5_K": 1.2e-4, "Q6_K": 6e-5}


def _llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    # convert_hf_to_gguf's LlamaModel.permute: rows (head, half, j) -> (head, j, half).
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def gguf_name(hf: str, arch: str = "llama") -> str:
    module, _, suffix = hf.rpartition(".")
    if module.startswith("model.layers."):
        _, _, layer, rest = module.split(".", 3)
        table = {**LAYER, **GEMMA_LAYER} if arch in ("gemma2", "gemma3") else LAYER
        return f"blk.{layer}.{table[rest]}.{suffix}"
    return f"{GLOBAL[module]}.{suffix}"


def llama3_rope_factors(config: Any, dim: int) -> list[float]:
    """llama.cpp's `rope_freqs` for a llama3 rope dict, per its convert script's formula."""
    rope = config.rope_parameters
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    out = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * rope["rope_theta"] ** (i / dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(float(factor))
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return out


def _tokenizer(w: Any) -> None:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())[:156]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(chars + ["ab", "cd", "<s>", "</s>"])
    w.add_token_types([1] * 158 + [3, 3])
    w.add_token_merges(["a b", "c d"])
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)


def _gemma_metadata(w: Any, c: Any, arch: str) -> None:
    if arch == "gemma":
        return
    w.add_sliding_window(c.sliding_window)
    w.add_sliding_window_pattern([t == "sliding_attention" for t in c.layer_types])
    if getattr(c, "attn_logit_softcapping", None):
        w.add_attn_logit_softcapping(c.attn_logit_softcapping)
    if getattr(c, "final_logit_softcapping", None):
        w.add_final_logit_softcapping(c.final_logit_softcapping)
    if arch == "gemma3":
        rope = c.rope_parameters
        w.add_rope_freq_base_swa(rope["sliding_attention"]["rope_theta"])
        full = rope["full_attention"]
        if full.get("rope_type") == "linear":
            w.add_rope_scaling_type(gguf_scaling("linear"))
            w.add_rope_scaling_factor(full["factor"])


def gguf_scaling(name: str) -> Any:
    import gguf

    return {"linear": gguf.RopeScalingType.LINEAR, "yarn": gguf.RopeScalingType.YARN}[name]


def write_gguf(model: torch.nn.Module, arch: str, path: Path,
               tensor_types: dict[str, str] | None = None) -> str:
    """`model` (an HF causal LM, vocab 160) as a float32 GGUF file of architecture `arch`;
    `tensor_types` (GGUF tensor name -> GGML type name) stores those tensors in another type
    (`gguf_blocks_cases.gguf_bytes`: K-quants get random blocks, not the model's values)."""
    import gguf

    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    flat_rope = c.rope_parameters.get("full_attention", c.rope_parameters)
    rot = int(head_dim * flat_rope.get("partial_rotary_factor", 1.0))
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    rope = c.rope_parameters.get("full_attention", c.rope_parameters)
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_rope_dimension_count(rot)
    _tokenizer(w)
    tensors = {k: v.detach().float().numpy() for k, v in model.state_dict().items()
               if "rotary_emb" not in k}
    if getattr(c, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)
    rope_type = flat_rope.get("rope_type")
    if arch == "llama" and rope_type == "llama3":
        w.add_tensor("rope_freqs.weight", np.array(llama3_rope_factors(c, rot), np.float32))
    if arch == "phi3" and rope_type == "longrope":
        rope = c.rope_parameters
        orig = c.original_max_position_embeddings
        scale = c.max_position_embeddings / orig
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)))
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_tensor("rope_factors_long.weight", np.array(rope["long_factor"], np.float32))
        w.add_tensor("rope_factors_short.weight", np.array(rope["short_factor"], np.float32))
    if arch.startswith("gemma"):
        _gemma_metadata(w, c, arch)
    for name, array in tensors.items():
        if arch.startswith("gemma") and name.endswith("norm.weight"):
            array = array + 1.0  # llama.cpp's convert script: plain RMSNorm weights
        if arch == "llama" and ".q_proj." in name:
            array = _llama_cpp_permute(array, c.num_attention_heads)
        elif arch == "llama" and ".k_proj." in name:
            array = _llama_cpp_permute(array, c.num_key_value_heads)
        target = gguf_name(name, arch)
        kind = (tensor_types or {}).get(target, "F32")
        if kind == "F32":
            w.add_tensor(target, np.ascontiguousarray(array))
        elif kind == "F16":
            w.add_tensor(target, np.ascontiguousarray(array, np.float16))
        else:
            from gguf_blocks_cases import gguf_bytes

            rng = np.random.default_rng(zlib.crc32(target.encode()))
            raw = gguf_bytes(kind, np.ascontiguousarray(array), rng, K_MAGNITUDE.get(kind, 0))
            w.add_tensor(target, raw, raw_dtype=gguf.GGMLQuantizationType[kind])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)
