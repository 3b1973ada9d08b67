"""What a checkpoint format hands the loader: a config, a tokenizer and a stream of tensors."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

NamedTensors = Iterator[tuple[str, torch.Tensor]]


@dataclass
class ModelSource:
    config: Any  # transformers.PretrainedConfig
    # All lazy: dummy loads only need the config (the folder may hold nothing else), and
    # tokenizers can be slow to build.
    load_tokenizer: Callable[[], Any]
    iter_weights: Callable[[], NamedTensors]  # HF parameter names, tensors on CPU
    count_tensors: Callable[[], int]  # for the progress bar


def _cache_root() -> Path:
    return Path(os.environ.get("SGLANG_CACHE_DIR", Path.home() / ".cache" / "sglang"))


def load_tokenizer(path: str | Path) -> Any:
    """An HF tokenizer from a folder, a hub id, or a .gguf file (transformers converts it)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if path.suffix == ".gguf" and path.is_file():
        return _gguf_tokenizer(path)
    return AutoTokenizer.from_pretrained(str(path))


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
