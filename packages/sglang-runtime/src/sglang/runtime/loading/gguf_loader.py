"""llama.cpp GGUF files: config from metadata, tensors dequantized to float32 on demand or
(`LazyGGUFTensor.packed`) decoded into packed codes for the `gguf` quantization method, HF names.
Per-architecture details (config fields, tensor names) live in `gguf_arch`; block formats in
`gguf_blocks`.

For `llama` files, llama.cpp's converter reorders the rows of attn_q/attn_k within each head
from HF's "two halves" RoPE layout to interleaved pairs: HF row (h, half, j) is stored at GGUF row
(h, j, half). `_unpermute` applies the inverse so our neox-style rotary sees HF's layout.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sglang.runtime.loading.gguf_arch import (
    GLOBAL_NAMES,
    GGUFArch,
    Metadata,
    arch_of,
    gguf_config,
)
from sglang.runtime.loading.gguf_blocks import BLOCK_FORMATS, GGUFCodes, decode_rows
from sglang.runtime.loading.source import ModelSource, NamedTensors, load_tokenizer

_LAYER_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


def _unpermute(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    # GGUF rows per head are (j, half); HF wants (half, j). Works for weights and biases.
    rest = w.shape[1:]
    return w.reshape(num_heads, -1, 2, *rest).transpose(1, 2).reshape(w.shape)


def hf_name(gguf_name: str, arch: GGUFArch) -> str:
    match = _LAYER_RE.fullmatch(gguf_name)
    names = arch.names()
    if match:
        layer, kind, suffix = match.groups()
        if kind not in names:
            raise KeyError(f"unknown {arch.model_type} GGUF tensor {gguf_name!r}")
        return f"model.layers.{layer}.{names[kind]}.{suffix}"
    base, _, suffix = gguf_name.rpartition(".")
    if base not in GLOBAL_NAMES:
        raise KeyError(f"unknown {arch.model_type} GGUF tensor {gguf_name!r}")
    return f"{GLOBAL_NAMES[base]}.{suffix}"


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

    def packed(self, dim: int | None, start: int = 0, length: int = 0) -> GGUFCodes | None:
        """This rank's slice (as `narrow`; dim None: all) as packed codes, or None when the
        tensor's format has none (F32, F16, Q5_0, ...). Rows (output features) slice whole
        blocks; a slice of the input features must fall on the format's groups."""
        type_name = self._tensor.tensor_type.name
        if type_name not in BLOCK_FORMATS or len(self.shape) != 2:
            return None
        rows, cols = self.shape
        head_rows = rows // self._heads if self._heads else 1
        data = self._tensor.data
        if dim == 0 and start % head_rows == 0 and length % head_rows == 0:
            codes = decode_rows(data[start : start + length], type_name, cols)
            return self._unpermuted(codes, length // head_rows)
        codes = self._unpermuted(decode_rows(data, type_name, cols), self._heads)
        if dim == 0:
            return codes.take_rows(slice(start, start + length))
        return codes if dim is None else codes.narrow_cols(start, length)

    def _unpermuted(self, codes: GGUFCodes, heads: int | None) -> GGUFCodes:
        # q/k rows: the same row permutation as `_unpermute`, applied to codes, scales, zeros.
        if self._heads is None or heads is None:
            return codes
        order = _unpermute(torch.arange(codes.shape[0]), heads).numpy()
        return codes.take_rows(order)


def _iter_tensors(reader: Any, config: Any, arch: GGUFArch) -> NamedTensors:
    for tensor in reader.tensors:
        if tensor.name in arch.config_tensors:
            continue  # already read into the config's rope parameters
        name = hf_name(tensor.name, arch)
        heads = None
        if arch.permuted_qk and ".q_proj." in name:
            heads = config.num_attention_heads
        elif arch.permuted_qk and ".k_proj." in name:
            heads = config.num_key_value_heads
        lazy = LazyGGUFTensor(tensor, heads)
        if arch.norm_shift and name.endswith("norm.weight"):
            # Replicated vectors, small: shifted back to HF's (1 + w) convention here.
            yield name, lazy.load() - arch.norm_shift
        else:
            yield name, lazy


def open_gguf(model_path: str) -> ModelSource:
    from sglang.runtime.loading.gguf_index import GGUFIndex

    path = Path(model_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist")
    reader = GGUFIndex(path)
    from sglang.runtime.loading import gguf_moe  # it imports this module's helpers

    if gguf_moe.is_moe_gguf(reader):  # issue 18 (moe): Mixtral-as-llama, qwen2moe, qwen3moe
        return gguf_moe.open_moe_gguf(reader, path)
    config = gguf_config(reader)
    arch = arch_of(Metadata(reader))
    return ModelSource(
        config=config,
        load_tokenizer=lambda: load_tokenizer(path),
        iter_weights=lambda: _iter_tensors(reader, config, arch),
        count_tensors=lambda: len(reader.tensors) - len(arch.config_tensors & {
            t.name for t in reader.tensors}),
    )
