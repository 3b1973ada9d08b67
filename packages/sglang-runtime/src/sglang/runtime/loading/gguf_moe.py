"""GGUF files of mixture-of-experts models, as llama.cpp writes them: Mixtral under the `llama`
architecture (with `llama.expert_count`), `qwen2moe` and `qwen3moe`.

Experts come stacked (`ffn_gate_exps` / `ffn_up_exps` [E, I, H], `ffn_down_exps` [E, H, I] in
HF order), which the MoE layer takes whole (`<...>.experts.<leaf>` names). Which layers are
sparse is read from the tensors (a layer with a router, `ffn_gate_inp`); the rest keep a dense
MLP (Qwen's `mlp_only_layers`). llama.cpp permutes q/k rows only for the `llama` architecture.
`gguf_loader.open_gguf` hands such files here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sglang.runtime.loading import gguf_loader
from sglang.runtime.loading.gguf_arch import _MISSING, GGUFArch, read_field
from sglang.runtime.loading.source import ModelSource, NamedTensors, load_tokenizer

# Per-layer GGUF names beyond the dense Llama ones; "{gate}" etc. are the family's expert leaves.
_MOE_LAYER_NAMES = {
    "ffn_gate_inp": "mlp.gate",
    "ffn_gate_exps": "mlp.experts.{gate}",
    "ffn_up_exps": "mlp.experts.{up}",
    "ffn_down_exps": "mlp.experts.{down}",
    "ffn_gate_inp_shexp": "mlp.shared_expert_gate",
    "ffn_gate_shexp": "mlp.shared_expert.gate_proj",
    "ffn_up_shexp": "mlp.shared_expert.up_proj",
    "ffn_down_shexp": "mlp.shared_expert.down_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
}
# Older llama.cpp Mixtral files hold one tensor per expert: blk.N.ffn_gate.E.weight.
_PER_EXPERT = re.compile(r"blk\.(\d+)\.ffn_(gate|up|down)\.(\d+)\.weight")
_QWEN_LEAVES = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}


# The attention, norm and global tensors: named as in every dense GGUF file.
_DENSE_NAMES = GGUFArch(architecture="", model_type="MoE")


@dataclass(frozen=True)
class MoeFormat:
    """One GGUF architecture: the HF config class and its MoE fields, the expert leaf names of
    our model class, whether q/k rows are permuted, Qwen-style sizes."""

    config_class: str
    architecture: str
    leaves: dict[str, str]
    permute_qk: bool
    qwen: bool
    norm_topk_default: bool = False


FORMATS: dict[str, MoeFormat] = {
    "llama": MoeFormat("MixtralConfig", "MixtralForCausalLM",
                       {"gate": "w1", "up": "w3", "down": "w2"}, permute_qk=True, qwen=False),
    "qwen2moe": MoeFormat("Qwen2MoeConfig", "Qwen2MoeForCausalLM", _QWEN_LEAVES,
                          permute_qk=False, qwen=True),
    "qwen3moe": MoeFormat("Qwen3MoeConfig", "Qwen3MoeForCausalLM", _QWEN_LEAVES,
                          permute_qk=False, qwen=True, norm_topk_default=True),
}


def is_moe_gguf(reader: Any) -> bool:
    arch = read_field(reader, "general.architecture")
    if arch not in FORMATS:
        return False
    return int(read_field(reader, f"{arch}.expert_count", 0) or 0) > 0


def moe_config(reader: Any) -> Any:
    import transformers

    arch = read_field(reader, "general.architecture")
    fmt = FORMATS[arch]

    def meta(key: str, default: Any = _MISSING) -> Any:
        return read_field(reader, f"{arch}.{key}", default)

    names = {t.name for t in reader.tensors}
    router = re.compile(r"blk\.(\d+)\.ffn_gate_inp\.weight")
    sparse = {int(m.group(1)) for n in names if (m := router.fullmatch(n))}
    hidden, heads = int(meta("embedding_length")), int(meta("attention.head_count"))
    layers = int(meta("block_count"))
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    args: dict[str, Any] = dict(
        architectures=[fmt.architecture],
        vocab_size=len(tokens.data) if tokens is not None else int(meta("vocab_size")),
        hidden_size=hidden,
        intermediate_size=int(meta("feed_forward_length", 0) or 0) or None,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=int(meta("attention.head_count_kv", heads)),
        head_dim=int(meta("attention.key_length", hidden // heads)),
        rms_norm_eps=float(meta("attention.layer_norm_rms_epsilon", 1e-6)),
        rope_theta=float(meta("rope.freq_base", 10000.0)),
        max_position_embeddings=int(meta("context_length", 4096)),
        tie_word_embeddings="output.weight" not in names,
        num_experts_per_tok=int(meta("expert_used_count")),
        bos_token_id=read_field(reader, "tokenizer.ggml.bos_token_id", None),
        eos_token_id=read_field(reader, "tokenizer.ggml.eos_token_id", None),
    )
    experts = int(meta("expert_count"))
    if fmt.qwen:
        dense = [i for i in range(layers) if i not in sparse]
        args.update(
            num_experts=experts, moe_intermediate_size=int(meta("expert_feed_forward_length")),
            norm_topk_prob=bool(meta("expert_weights_norm", fmt.norm_topk_default)),
            decoder_sparse_step=1, mlp_only_layers=dense,
        )
        shared = meta("expert_shared_feed_forward_length", None)
        if shared is not None:
            args["shared_expert_intermediate_size"] = int(shared)
    else:
        args["num_local_experts"] = experts
    args = {k: v for k, v in args.items() if v is not None}
    return getattr(transformers, fmt.config_class)(**args)


def _hf_name(gguf_name: str, fmt: MoeFormat) -> str:
    per_expert = _PER_EXPERT.fullmatch(gguf_name)
    if per_expert:
        layer, kind, expert = per_expert.groups()
        return f"model.layers.{layer}.mlp.experts.{expert}.{fmt.leaves[kind]}.weight"
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", gguf_name)
    if match and match.group(2) in _MOE_LAYER_NAMES:
        layer, kind, suffix = match.groups()
        return f"model.layers.{layer}.{_MOE_LAYER_NAMES[kind].format(**fmt.leaves)}.{suffix}"
    return gguf_loader.hf_name(gguf_name, _DENSE_NAMES)


def _iter_tensors(reader: Any, config: Any, fmt: MoeFormat) -> NamedTensors:
    heads_of: dict[str, Callable[[], int]] = {
        ".q_proj.": lambda: int(config.num_attention_heads),
        ".k_proj.": lambda: int(config.num_key_value_heads),
    }
    for tensor in reader.tensors:
        name = _hf_name(tensor.name, fmt)
        heads = None
        if fmt.permute_qk:
            heads = next((fn() for key, fn in heads_of.items() if key in name), None)
        lazy = gguf_loader.LazyGGUFTensor(tensor, heads)
        if ".shared_expert_gate." in name and len(lazy.shape) == 1:
            # llama.cpp keeps this [1, H] matrix as a vector.
            yield name, lazy.load().reshape(1, -1)
        else:
            yield name, lazy


def open_moe_gguf(reader: Any, path: Path) -> ModelSource:
    fmt = FORMATS[read_field(reader, "general.architecture")]
    config = moe_config(reader)
    return ModelSource(
        config=config,
        load_tokenizer=lambda: load_tokenizer(path),
        iter_weights=lambda: _iter_tensors(reader, config, fmt),
        count_tensors=lambda: len(reader.tensors),
    )
