"""The original LLaVA repo's checkpoint layout (liuhaotian/llava-v1.5-7b, llava-v1.6-*, Yi-VL).

Its config.json says `model_type: "llava"` (which transformers reads as a LlavaConfig without a
text config) but holds flat Llama/Mistral fields plus `mm_*` fields, and its CLIP tower lives in
another folder named by `mm_vision_tower`. `adapt` (the "sglang.config_adapters" entry) turns
it into the equivalent transformers config — LlavaConfig, or LlavaNextConfig for anyres — keeping
the original architecture name, and asks the loader to stream the CLIP folder's tensors under
`vision_tower.`. The original `mm_*` / `image_aspect_ratio` fields stay on the config for the
model and the processor; `mm_vision_tower` is replaced by the absolute CLIP folder found and
`_name_or_path` is the model folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from sglang.multimodal.models.llava import LlavaForConditionalGeneration
from sglang.multimodal.models.llava_next import ImageNewline, LlavaNextForConditionalGeneration
from sglang.runtime.messages import MultimodalItem
from sglang.runtime.models.config import ModelConfig

TOWER_PREFIX = "vision_tower."
# Fields of the original config that describe the multimodal part, not the language model.
_MM_FIELDS = (
    "mm_vision_tower", "mm_hidden_size", "mm_vision_select_layer", "mm_vision_select_feature",
    "mm_projector_type", "mm_patch_merge_type", "image_aspect_ratio", "image_grid_pinpoints",
    "mm_use_im_start_end", "mm_use_im_patch_token", "mm_projector_lr", "mm_vision_tower_lr",
    "tune_mm_mlp_adapter", "freeze_mm_mlp_adapter", "unfreeze_mm_vision_tower", "use_mm_proj",
    "image_token_index", "image_crop_resolution", "image_split_resolution", "mm_resampler_type",
    "mm_spatial_pool_mode", "mm_spatial_pool_stride", "mm_newline_position", "mm_pooling_position",
)
# mm_vision_select_feature -> transformers' vision_feature_select_strategy
_SELECT_FEATURE = {"patch": "default", "cls_patch": "full"}
# The language model family of each original architecture name.
_TEXT_MODEL_TYPE = {"LlavaLlamaForCausalLM": "llama", "LlavaMistralForCausalLM": "mistral"}
ANYRES_MERGE_TYPES = ("spatial_unpad",)


def is_anyres(config: Any) -> bool:
    return "anyres" in str(getattr(config, "image_aspect_ratio", "") or "")


def find_vision_tower(folder: Path, ref: str) -> Path:
    """The CLIP checkpoint folder `mm_vision_tower` names: a path (absolute, or relative to the
    model folder as Yi-VL writes "./vit/..."), a sub-folder of the model folder named like the
    hub id's last part, else a hub id fetched like any model (the local HF cache first)."""
    from sglang.runtime.loading.default_model import is_path_like
    from sglang.runtime.loading.hf_loader import resolve_model_dir

    name = ref.strip()
    candidates = [Path(name).expanduser(), folder / name, folder / Path(name).name]
    for path in candidates:
        if (path / "config.json").is_file():
            return path
    tried = ", ".join(str(c) for c in candidates)
    if is_path_like(name):
        raise FileNotFoundError(f"mm_vision_tower {ref!r} of {folder}: no CLIP folder at {tried}")
    try:
        return resolve_model_dir(name)
    except Exception as e:  # noqa: BLE001 - offline, unknown repo: the same advice
        raise FileNotFoundError(
            f"mm_vision_tower {ref!r} of {folder} is not a folder (tried {tried}) and could not be "
            f"fetched ({type(e).__name__}); point mm_vision_tower in config.json at a local CLIP folder"
        ) from None


def _vision_config(tower: Path) -> Any:
    from transformers import CLIPVisionConfig

    raw = json.loads((tower / "config.json").read_text())
    model_type = raw.get("model_type")
    if model_type not in ("clip", "clip_vision_model"):
        raise ValueError(f"the vision tower at {tower} is a {model_type!r}, not a CLIP model")
    vision = raw.get("vision_config", raw) if model_type == "clip" else raw
    return CLIPVisionConfig(**{k: v for k, v in vision.items() if k not in ("architectures", "model_type")})


def _text_config(raw: dict[str, Any], arch: str) -> Any:
    from transformers import AutoConfig

    fields = {k: v for k, v in raw.items() if k not in _MM_FIELDS and k not in ("architectures", "model_type")}
    return AutoConfig.for_model(_TEXT_MODEL_TYPE.get(arch, "llama"), **fields)


def adapt(folder: Path, raw: dict[str, Any]) -> Any:
    """`plugins.CONFIG_ADAPTERS` entry: original-layout config.json -> ConfigAdaptation."""
    import transformers

    from sglang.runtime.loading.source import ConfigAdaptation

    arch = next(a for a in raw.get("architectures", []) if a in _TEXT_MODEL_TYPE)
    tower = find_vision_tower(Path(folder), str(raw["mm_vision_tower"]))
    select = str(raw.get("mm_vision_select_feature", "patch"))
    if select not in _SELECT_FEATURE:
        raise ValueError(f"unsupported mm_vision_select_feature {select!r} (known: {sorted(_SELECT_FEATURE)})")
    args: dict[str, Any] = {
        "vision_config": _vision_config(tower).to_dict(),
        "text_config": _text_config(raw, arch).to_dict(),
        "vision_feature_layer": int(raw.get("mm_vision_select_layer", -2)),
        "vision_feature_select_strategy": _SELECT_FEATURE[select],
        "tie_word_embeddings": bool(raw.get("tie_word_embeddings", False)),
    }
    if raw.get("image_token_index") is not None:
        args["image_token_index"] = int(raw["image_token_index"])
    anyres = "anyres" in str(raw.get("image_aspect_ratio", ""))
    if anyres:
        merge = raw.get("mm_patch_merge_type", "flat")
        if merge not in ANYRES_MERGE_TYPES:
            raise ValueError(f"anyres with mm_patch_merge_type {merge!r} is not supported "
                             f"(supported: {', '.join(ANYRES_MERGE_TYPES)})")
        args["image_grid_pinpoints"] = raw["image_grid_pinpoints"]
        config = transformers.LlavaNextConfig(**args)
    else:
        config = transformers.LlavaConfig(**args)
    config.architectures = [arch]
    # The original fields ride along for the model and the input processor (aspect-ratio
    # padding, start/end tokens); the tower reference becomes the folder actually found.
    for key in _MM_FIELDS:
        if key in raw and key != "image_token_index":
            setattr(config, key, raw[key])
    config.mm_projector_type = raw.get("mm_projector_type", "linear")
    config.mm_vision_tower = str(tower.resolve())
    config._name_or_path = str(Path(folder))
    return ConfigAdaptation(config=config, weight_folders={TOWER_PREFIX: tower})


class LlavaLlamaForCausalLM(LlavaNextForConditionalGeneration):
    """An original-layout checkpoint: LLaVA 1.5 / Yi-VL (one square image, "pad"/"flat") or 1.6
    (anyres + spatial_unpad), with the projector its `mm_projector_type` names."""

    embedders: ClassVar[dict[str, str]] = {"image": "embed_original_image"}

    def __init__(self, config: ModelConfig | Any, dtype: torch.dtype = torch.float32) -> None:
        # LLaVA's constructor (tower + projector); the anyres parts only when the config asks.
        LlavaForConditionalGeneration.__init__(self, config, dtype)
        hf = self.model_config.hf
        if not getattr(hf, "mm_projector_type", None):
            raise ValueError(f"{type(self).__name__} needs an original-layout config (mm_projector_type); "
                             "load the folder through the runtime so its config adapter runs")
        self.anyres = is_anyres(hf)
        if self.anyres:
            self.image_grid_pinpoints = [list(map(int, p)) for p in hf.image_grid_pinpoints]
            self.image_newline = ImageNewline(self.model_config.hidden_size, dtype)

    def embed_original_image(self, item: MultimodalItem, features: torch.Tensor) -> torch.Tensor:
        if self.anyres:
            return self.embed_anyres_image(item, features)
        return self.embed_image(item, features)


class LlavaMistralForCausalLM(LlavaLlamaForCausalLM):
    """The same with a Mistral decoder (the runtime's Llama class serves Mistral too)."""
