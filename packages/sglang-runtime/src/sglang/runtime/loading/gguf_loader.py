"""llama.cpp GGUF files: config from metadata, tensors dequantized to float32, HF names.

llama.cpp's converter reorders the rows of attn_q/attn_k within each head from HF's
"two halves" RoPE layout to interleaved pairs: HF row (h, half, j) is stored at GGUF row
(h, j, half). `_unpermute` applies the inverse so our neox-style rotary sees HF's layout.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sglang.runtime.loading.source import ModelSource, NamedTensors, load_tokenizer

_MISSING = object()

# GGUF name (blk.N. prefix removed) -> HF name (under model.layers.N. for per-layer tensors).
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_LAYER_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


def _field(reader: Any, key: str, default: Any = _MISSING) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is _MISSING:
            raise KeyError(f"GGUF metadata lacks {key!r}")
        return default
    return field.contents()


def gguf_config(reader: Any) -> Any:
    """A transformers LlamaConfig equivalent to the file's llama.* metadata."""
    from transformers import LlamaConfig

    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise NotImplementedError(f"GGUF architecture {arch!r} is not supported (only 'llama')")
    tensor_names = {t.name for t in reader.tensors}
    scaling = _field(reader, "llama.rope.scaling.type", "none")
    if "rope_freqs.weight" in tensor_names or scaling not in ("none", ""):
        raise NotImplementedError("GGUF files with RoPE scaling are not supported yet")

    def meta(key: str, default: Any = _MISSING) -> Any:
        return _field(reader, f"llama.{key}", default)

    hidden, heads = int(meta("embedding_length")), int(meta("attention.head_count"))
    # `data` indexes the array's items; decoding ~50k token strings just to count them is slow.
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab_size = len(tokens.data) if tokens is not None else int(meta("vocab_size"))
    return LlamaConfig(
        architectures=["LlamaForCausalLM"],
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=int(meta("feed_forward_length")),
        num_hidden_layers=int(meta("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(meta("attention.head_count_kv", heads)),
        head_dim=int(meta("attention.key_length", hidden // heads)),
        rms_norm_eps=float(meta("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(meta("rope.freq_base", 10000.0)),
        max_position_embeddings=int(meta("context_length", 4096)),
        # No separate output matrix means the LM head reuses the embeddings.
        tie_word_embeddings="output.weight" not in tensor_names,
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id", None),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id", None),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id", None),
    )


def _unpermute(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    # GGUF rows per head are (j, half); HF wants (half, j). Works for weights and biases.
    rest = w.shape[1:]
    return w.reshape(num_heads, -1, 2, *rest).transpose(1, 2).reshape(w.shape)


def hf_name(gguf_name: str) -> str:
    match = _LAYER_RE.fullmatch(gguf_name)
    if match:
        layer, kind, suffix = match.groups()
        if kind not in _LAYER_NAMES:
            raise KeyError(f"unknown GGUF tensor {gguf_name!r}")
        return f"model.layers.{layer}.{_LAYER_NAMES[kind]}.{suffix}"
    base, _, suffix = gguf_name.rpartition(".")
    if base not in _GLOBAL_NAMES:
        raise KeyError(f"unknown GGUF tensor {gguf_name!r}")
    return f"{_GLOBAL_NAMES[base]}.{suffix}"


class LazyGGUFTensor:
    """A GGUF tensor, dequantized on demand. A quantization block never spans two rows, so a
    row slice (what a tensor-parallel rank keeps of most matrices) dequantizes only its rows;
    q/k rows are un-permuted per head, so their slices must hold whole heads."""

    def __init__(self, tensor: Any, heads: int | None) -> None:
        self._tensor = tensor
        self._heads = heads  # q/k projections: llama.cpp permuted rows within each head
        # GGUF lists dimensions innermost first; HF order is the reverse.
        self.shape = torch.Size(int(d) for d in reversed(tensor.shape))

    def _dequantize(self, data: Any) -> torch.Tensor:
        from gguf.quants import dequantize

        # dequantize returns numpy rows in HF order ([out, in]); unquantized tensors come back
        # as read-only views of the memory map, which torch must not alias.
        array = np.asarray(dequantize(data, self._tensor.tensor_type), np.float32)
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = array.copy()
        return torch.from_numpy(array).reshape(-1, *self.shape[1:])

    def load(self) -> torch.Tensor:
        weight = self._dequantize(self._tensor.data)
        return weight if self._heads is None else _unpermute(weight, self._heads)

    def narrow(self, dim: int, start: int, length: int) -> torch.Tensor:
        head_rows = self.shape[0] // self._heads if self._heads else 1
        if dim != 0 or start % head_rows or length % head_rows:
            return self.load().narrow(dim, start, length)
        rows = self._dequantize(self._tensor.data[start : start + length])
        return rows if self._heads is None else _unpermute(rows, length // head_rows)


def _iter_tensors(reader: Any, config: Any) -> NamedTensors:
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        heads = None
        if ".q_proj." in name:
            heads = config.num_attention_heads
        elif ".k_proj." in name:
            heads = config.num_key_value_heads
        yield name, LazyGGUFTensor(tensor, heads)


def open_gguf(model_path: str) -> ModelSource:
    from gguf import GGUFReader

    path = Path(model_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist")
    reader = GGUFReader(str(path))
    from sglang.runtime.loading import gguf_moe  # it imports this module's helpers

    if gguf_moe.is_moe_gguf(reader):  # issue 18 (moe): Mixtral-as-llama, qwen2moe, qwen3moe
        return gguf_moe.open_moe_gguf(reader, path)
    config = gguf_config(reader)
    return ModelSource(
        config=config,
        load_tokenizer=lambda: load_tokenizer(path),
        iter_weights=lambda: _iter_tensors(reader, config),
        count_tensors=lambda: len(reader.tensors),
    )
