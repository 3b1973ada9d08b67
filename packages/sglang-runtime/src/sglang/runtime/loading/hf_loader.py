"""HF-format checkpoints: a folder (or hub id) with config.json, *.safetensors and a tokenizer."""

from __future__ import annotations

from pathlib import Path

from sglang.runtime.loading.default_model import check_local_path
from sglang.runtime.loading.source import LazyTensor, ModelSource, NamedTensors, load_tokenizer

# Enough to run a model; skips duplicate .bin/.pt/.gguf/onnx weights that many repos also carry.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]


def resolve_model_dir(path_or_id: str) -> Path:
    """A local folder as is; otherwise download the hub repo (or reuse the local HF cache)."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file, not an HF model folder (config.json + safetensors)")
    check_local_path(path_or_id, "model path")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(path_or_id, allow_patterns=_HUB_PATTERNS))
    except Exception as e:  # offline, unknown repo, gated repo, HTTP errors: all say the same
        raise OSError(
            f"model {path_or_id!r} is not a local path and couldn't be downloaded from the "
            f"Hugging Face Hub ({type(e).__name__}: {e}); pass a local model path instead"
        ) from e


def _safetensors_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {folder}")
    return files


def _iter_safetensors(files: list[Path]) -> NamedTensors:
    from safetensors import safe_open

    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open handles aren't iterable
                # Lazy: a tensor-parallel rank reads only its slice.
                yield name, LazyTensor(f.get_slice(name))


def _count_tensors(files: list[Path]) -> int:
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            total += len(list(f.keys()))  # noqa: SIM118
    return total


def open_hf(model_path: str) -> ModelSource:
    from transformers import AutoConfig

    folder = resolve_model_dir(model_path)
    config = AutoConfig.from_pretrained(str(folder))
    return ModelSource(
        config=config,
        load_tokenizer=lambda: load_tokenizer(folder),
        iter_weights=lambda: _iter_safetensors(_safetensors_files(folder)),
        count_tensors=lambda: _count_tensors(_safetensors_files(folder)),
    )
