"""What a checkpoint format hands the loader: a config, a tokenizer and a stream of tensors."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from sglang.runtime.layers.sharding import ShardSpec
from sglang.runtime.loading.default_model import check_local_path


class LazyWeight(Protocol):
    """A checkpoint tensor not read yet: `narrow` reads only the slice a tensor-parallel rank
    keeps, `load` reads it all. Valid only until the weight iterator moves on."""

    shape: torch.Size

    def narrow(self, dim: int, start: int, length: int) -> torch.Tensor: ...

    def load(self) -> torch.Tensor: ...


class LazyTensor:
    """A safetensors tensor as a LazyWeight."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader  # a safetensors slice handle (get_slice)
        self.shape = torch.Size(reader.get_shape())

    def narrow(self, dim: int, start: int, length: int) -> torch.Tensor:
        index = (slice(None),) * dim + (slice(start, start + length),)
        return self._reader[index]

    def load(self) -> torch.Tensor:
        return self._reader[...] if len(self.shape) == 0 else self._reader[:]


NamedTensors = Iterator[tuple[str, "torch.Tensor | LazyWeight"]]


def materialize(t: torch.Tensor | LazyWeight) -> torch.Tensor:
    return t if isinstance(t, torch.Tensor) else t.load()


def read_shard(spec: ShardSpec, tensor: torch.Tensor | LazyWeight, name: str) -> torch.Tensor:
    """This rank's slice of `tensor` as `spec` describes it, after checking the checkpoint's
    shape (a mismatched checkpoint fails loudly instead of loading a wrong slice)."""
    want = spec.checkpoint_shape
    if tuple(tensor.shape) != want:
        raise ValueError(f"{name}: model shape {want} != checkpoint shape {tuple(tensor.shape)}")
    if spec.dim is None:
        return materialize(tensor)
    return tensor.narrow(spec.dim, spec.start, spec.size)


@dataclass
class ModelSource:
    config: Any  # transformers.PretrainedConfig
    # All lazy: dummy loads only need the config (the folder may hold nothing else), and
    # tokenizers can be slow to build.
    load_tokenizer: Callable[[], Any]
    # HF parameter names; CPU tensors, or LazyWeights (use `materialize` for a tensor).
    iter_weights: Callable[[], NamedTensors]
    count_tensors: Callable[[], int]  # for the progress bar


@dataclass
class ConfigAdaptation:
    """What a config adapter (`plugins.CONFIG_ADAPTERS`) makes of a folder whose config.json
    transformers reads wrongly: the config to build the model from, and other folders whose
    weights belong to the model, each streamed with its prefix before the tensor names
    (the original LLaVA layout keeps its CLIP tower in a separate folder)."""

    config: Any  # transformers.PretrainedConfig
    weight_folders: dict[str, Path] = field(default_factory=dict)


def _cache_root() -> Path:
    return Path(os.environ.get("SGLANG_CACHE_DIR", Path.home() / ".cache" / "sglang"))


def load_tokenizer(path: str | Path) -> Any:
    """An HF tokenizer from a folder, a hub id, or a .gguf file (transformers converts it)."""
    from transformers import AutoTokenizer

    check_local_path(str(path), "tokenizer path")
    path = Path(path)
    if path.suffix == ".gguf" and path.is_file():
        return _gguf_tokenizer(path)
    for file_name, build in _TOKENIZER_FILES.items():
        if (path / file_name).is_file():
            return build(path)
    return AutoTokenizer.from_pretrained(str(path))


def _qwen_tokenizer(folder: Path) -> Any:
    from sglang.runtime.loading.qwen_tokenizer import qwen_tokenizer

    return qwen_tokenizer(folder)


# Tokenizer files that AutoTokenizer reads only through a checkpoint's remote code.
_TOKENIZER_FILES: dict[str, Callable[[Path], Any]] = {"qwen.tiktoken": _qwen_tokenizer}


def _gguf_tokenizer(path: Path) -> Any:
    """Converting a GGUF vocabulary takes seconds (the gguf reader parses every token string in
    Python), so the converted tokenizer is saved once per file (keyed by size and mtime) and
    reloaded from there."""
    from transformers import AutoTokenizer

    st = path.stat()
    cached = _cache_root() / "tokenizers" / f"{path.stem}-{st.st_size}-{st.st_mtime_ns}"
    if (cached / "tokenizer_config.json").is_file():
        try:
            return AutoTokenizer.from_pretrained(str(cached))
        except Exception:  # a damaged cache entry: rebuild it below
            pass
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".tok-", dir=_ensure_dir(cached.parent)))
        tok.save_pretrained(str(tmp))
        os.replace(tmp, cached)  # atomic: concurrent loaders never see half a folder
    except OSError:
        pass  # a read-only home only costs the next load its conversion time
    return tok


def _ensure_dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
