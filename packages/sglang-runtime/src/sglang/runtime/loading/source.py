"""What a checkpoint format hands the loader: a config, a tokenizer and a stream of tensors."""

from __future__ import annotations

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


def load_tokenizer(path: str | Path) -> Any:
    """An HF tokenizer from a folder, a hub id, or a .gguf file (transformers converts it)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if path.suffix == ".gguf" and path.is_file():
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return AutoTokenizer.from_pretrained(str(path))
