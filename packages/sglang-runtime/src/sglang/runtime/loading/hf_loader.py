"""HF-format checkpoints: a folder (or hub id) with config.json, *.safetensors (or PyTorch *.bin
shards) and a tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

from sglang.runtime import plugins
from sglang.runtime.loading.default_model import check_local_path
from sglang.runtime.loading.source import (
    ConfigAdaptation,
    LazyTensor,
    ModelSource,
    NamedTensors,
    load_tokenizer,
)

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


def _weight_files(folder: Path) -> list[Path]:
    """safetensors when the folder has them; otherwise PyTorch .bin shards (older checkpoints,
    the original LLaVA releases)."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors or *.bin weights in {folder}")
    return files


def _iter_file(file: Path) -> NamedTensors:
    if file.suffix == ".bin":
        import torch

        # weights_only: a pickle from the internet must not run code; mmap: no second copy.
        state = torch.load(str(file), map_location="cpu", weights_only=True, mmap=True)
        yield from state.items()
        return
    from safetensors import safe_open

    with safe_open(str(file), framework="pt", device="cpu") as f:
        for name in f.keys():  # noqa: SIM118 - safe_open handles aren't iterable
            # Lazy: a tensor-parallel rank reads only its slice.
            yield name, LazyTensor(f.get_slice(name))


def _count_file(file: Path) -> int:
    if file.suffix == ".bin":
        return 0  # counting would unpickle the shard; the progress bar just runs open-ended
    from safetensors import safe_open

    with safe_open(str(file), framework="pt", device="cpu") as f:
        return len(list(f.keys()))  # noqa: SIM118


def _weight_sources(folder: Path, extra: dict[str, Path]) -> list[tuple[str, Path]]:
    """(name prefix, file) for every weight file of the model: its own folder, then each extra."""
    return [("", f) for f in _weight_files(folder)] + [
        (prefix, f) for prefix, sub in extra.items() for f in _weight_files(sub)
    ]


def _iter_weights(sources: list[tuple[str, Path]]) -> NamedTensors:
    for prefix, file in sources:
        for name, tensor in _iter_file(file):
            yield prefix + name, tensor


def read_hf_config(folder: Path) -> ConfigAdaptation:
    """The folder's config through the config adapter of its architecture when one is
    registered (checkpoint layouts AutoConfig reads wrongly), else AutoConfig's."""
    from transformers import AutoConfig

    raw_path = folder / "config.json"
    if raw_path.is_file():
        raw = json.loads(raw_path.read_text())
        for arch in raw.get("architectures") or ():
            if arch in plugins.CONFIG_ADAPTERS:
                adapted: ConfigAdaptation = plugins.CONFIG_ADAPTERS.get(arch)(folder, raw)
                return adapted
    return ConfigAdaptation(AutoConfig.from_pretrained(str(folder)))


def open_hf(model_path: str) -> ModelSource:
    folder = resolve_model_dir(model_path)
    adapted = read_hf_config(folder)
    return ModelSource(
        config=adapted.config,
        load_tokenizer=lambda: load_tokenizer(folder),
        iter_weights=lambda: _iter_weights(_weight_sources(folder, adapted.weight_folders)),
        count_tensors=lambda: sum(
            _count_file(f) for _, f in _weight_sources(folder, adapted.weight_folders)
        ),
    )
