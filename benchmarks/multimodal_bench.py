"""Multimodal benchmark (issue 16), one GPU call, dummy bf16 weights:

  video: LLaVA-NeXT-Video-7B shape, 16-frame video QA. Videos/s and frames/s through our Engine
         (PyAV decode, preprocessing, CLIP, prefill, 32 decode steps) against transformers'
         `LlavaNextVideoForConditionalGeneration.generate` on the same GPU (its input already
         decoded and preprocessed on the GPU, so it is timed on the model alone), and against the
         vision-tower + projector + prefill FLOP ceiling at this run's measured matmul rate.
  image: LLaVA-1.5-7B shape, 256 image questions over 16 distinct images: images/s with the
         radix cache against --disable-radix-cache.

    python benchmarks/multimodal_bench.py --out $OUT/multimodal.json
    python benchmarks/multimodal_bench.py --tiny          # tiny shapes on the CPU (a dry run)
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from gpu_suite_roofline import ModelShape  # noqa: E402
from multimodal_flops import VisionShape, video_qa_flops  # noqa: E402

VICUNA_7B = {"vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 11008,
             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
             "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}
CLIP_L_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
              "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
              "projection_dim": 768, "hidden_act": "quick_gelu"}
TINY_TEXT = {"vocab_size": 320, "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
               "num_attention_heads": 4, "image_size": 56, "patch_size": 14,
               "projection_dim": 32, "hidden_act": "quick_gelu"}
PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
FEATURE_LAYER = -2
IMAGE_TOKEN, VIDEO_TOKEN = 32000, 32001  # ids inside the vocabulary, as the HF checkpoints have


def _configs(tiny: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    text, vision = (TINY_TEXT, TINY_VISION) if tiny else (VICUNA_7B, CLIP_L_336)
    text = {**text, "model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    return text, {**vision, "model_type": "clip_vision_model"}


def _image_token(tiny: bool) -> tuple[int, int]:
    return (300, 301) if tiny else (IMAGE_TOKEN, VIDEO_TOKEN)


def write_model(folder: Path, kind: str, tiny: bool) -> dict[str, Any]:
    """config.json of a LLaVA-1.5 ("llava") or LLaVA-NeXT-Video ("video") model; dummy weights."""
    text, vision = _configs(tiny)
    image_id, video_id = _image_token(tiny)
    common = {"text_config": text, "vision_config": vision, "image_token_index": image_id,
              "vision_feature_layer": FEATURE_LAYER, "vision_feature_select_strategy": "default",
              "projector_hidden_act": "gelu", "torch_dtype": "bfloat16"}
    if kind == "llava":
        config = {**common, "model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]}
    else:
        side = vision["image_size"]
        config = {**common, "model_type": "llava_next_video", "video_token_index": video_id,
                  "architectures": ["LlavaNextVideoForConditionalGeneration"],
                  "image_grid_pinpoints": [[p * side // 336 for p in pair] for pair in PINPOINTS],
                  "spatial_pool_mode": "average", "spatial_pool_stride": 2}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return config


# ---- media ---------------------------------------------------------------------------------
def write_video(path: Path, seed: int, frames: int, size: tuple[int, int]) -> None:
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.roll(np.kron(base, np.ones((8, 8, 1), np.uint8)), 4 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def png_image(seed: int, size: tuple[int, int]) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ---- timing helpers ------------------------------------------------------------------------
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def matmul_rate(device: str, tiny: bool) -> float:
    """bf16 GEMM FLOP/s measured here (the ceiling's rate); float32 on the CPU."""
    n = 256 if tiny else 8192
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    _sync(device)
    iters = 5 if tiny else 50
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - t0)


def _engine(folder: Path, device: str, **overrides: Any) -> Any:
    import sglang as sgl

    return sgl.Engine(model_path=str(folder), load_format="dummy", device=device,
                      dtype="float32" if device == "cpu" else "bfloat16", context_length=4096,
                      random_seed=0, **overrides)


def _timed_generate(engine: Any, ids: list[list[int]], params: dict[str, Any],
                    device: str, **media: Any) -> tuple[float, list[dict[str, Any]]]:
    _sync(device)
    t0 = time.perf_counter()
    outs = engine.generate(input_ids=ids, sampling_params=params, **media)
    _sync(device)
    return time.perf_counter() - t0, outs


def video_ref(path: Path, num_frames: int) -> Any:
    """A video reference with its frame count, as the Engine takes it."""
    return {"url": str(path), "num_frames": num_frames}


def _prompt_parts(vocab: int, seed: int, before: int, after: int) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    top = min(_image_token(vocab < 1000)) - 1  # ordinary tokens, below the media tokens
    return rng.integers(10, top, before).tolist(), rng.integers(10, top, after).tolist()


# ---- phases --------------------------------------------------------------------------------
def run_video(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config = write_model(work / "llava_next_video", "video", args.tiny)
    text, vision = config["text_config"], config["vision_config"]
    frames, n = args.frames, (6 if args.tiny else args.videos)
    size = (112, 84) if args.tiny else (480, 360)
    paths = []
    for i in range(n + 2):  # two more for the warm-up
        paths.append(work / f"video{i}.mp4")
        write_video(paths[-1], i, args.video_length, size)
    _, video_id = _image_token(args.tiny)
    prefix, question = _prompt_parts(text["vocab_size"], 0, 32, 16)
    ids = [prefix + [video_id] + question]
    params = {"temperature": 0, "max_new_tokens": args.new_tokens, "ignore_eos": True}

    engine = _engine(work / "llava_next_video", args.device)
    try:
        _timed_generate(engine, ids * 2, params, args.device,
                        video_data=[video_ref(p, frames) for p in paths[n:]])
        elapsed, outs = _timed_generate(engine, ids * n, params, args.device,
                                        video_data=[video_ref(p, frames) for p in paths[:n]])
    finally:
        engine.shutdown()
        _free()
    prompt_tokens = int(outs[0]["meta_info"]["prompt_tokens"])
    tokens_per_frame = (prompt_tokens - len(prefix) - len(question)) // frames
    ours = {"videos": n, "seconds": elapsed, "videos_per_s": n / elapsed,
            "frames_per_s": n * frames / elapsed, "prompt_tokens": prompt_tokens,
            "tokens_per_frame": tokens_per_frame}

    hf = run_hf_video(config, args, prefix, question, tokens_per_frame)
    rate = matmul_rate(args.device, args.tiny)
    flops = video_qa_flops(ModelShape.from_config(text),
                           VisionShape.from_config(vision, FEATURE_LAYER), frames,
                           tokens_per_frame, len(prefix) + len(question))
    ceiling = rate / flops["total"]
    return {"ours": ours, "transformers": hf, "matmul_flops_per_s": rate, "flops_per_video": flops,
            "ceiling_videos_per_s": ceiling, "share_of_ceiling": ours["videos_per_s"] / ceiling,
            "speedup_vs_transformers": ours["videos_per_s"] / hf["videos_per_s"]}


def run_hf_video(config: dict[str, Any], args: argparse.Namespace, prefix: list[int],
                 question: list[int], tokens_per_frame: int) -> dict[str, Any]:
    from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    hf_config = LlavaNextVideoConfig(**{k: v for k, v in config.items() if k != "architectures"})
    with torch.device(args.device):
        held = {"model": LlavaNextVideoForConditionalGeneration(hf_config).to(dtype).eval()}
    batch, n = (2, 4) if args.tiny else (args.hf_batch, args.hf_videos)
    video_id = config["video_token_index"]
    ids = prefix + [video_id] * (args.frames * tokens_per_frame) + question
    side = config["vision_config"]["image_size"]

    def one_batch() -> None:
        input_ids = torch.tensor([ids] * batch, device=args.device)
        pixels = torch.randn(batch, args.frames, 3, side, side, device=args.device, dtype=dtype)
        with torch.no_grad():
            held["model"].generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                           pixel_values_videos=pixels, max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, do_sample=False)

    try:
        one_batch()  # warm-up
        _sync(args.device)
        t0 = time.perf_counter()
        for _ in range(n // batch):
            one_batch()
        _sync(args.device)
        elapsed = time.perf_counter() - t0
    finally:
        held.clear()
        _free()
    done = (n // batch) * batch
    return {"videos": done, "batch": batch, "seconds": elapsed, "videos_per_s": done / elapsed,
            "frames_per_s": done * args.frames / elapsed}


def run_image(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config = write_model(work / "llava", "llava", args.tiny)
    image_id, _ = _image_token(args.tiny)
    n_images, n_questions = (4, 16) if args.tiny else (16, 256)
    size = (160, 120) if args.tiny else (640, 480)
    images = [png_image(i, size) for i in range(n_images + 2)]
    system, _ = _prompt_parts(config["text_config"]["vocab_size"], 1, 32, 0)
    ids, refs = [], []
    for q in range(n_questions):
        _, question = _prompt_parts(config["text_config"]["vocab_size"], 100 + q, 0, 16)
        ids.append(system + [image_id] + question)
        refs.append(images[q % n_images])
    params = {"temperature": 0, "max_new_tokens": 16, "ignore_eos": True}
    out: dict[str, Any] = {"images": n_images, "questions": n_questions}
    for name, disable in (("radix_cache", False), ("no_radix_cache", True)):
        engine = _engine(work / "llava", args.device, disable_radix_cache=disable)
        try:
            _timed_generate(engine, ids[:2], params, args.device, image_data=images[n_images:])
            elapsed, outs = _timed_generate(engine, ids, params, args.device, image_data=refs)
        finally:
            engine.shutdown()
            _free()
        cached = sum(int(o["meta_info"].get("cached_tokens", 0)) for o in outs)
        prompt = sum(int(o["meta_info"]["prompt_tokens"]) for o in outs)
        out[name] = {"seconds": elapsed, "questions_per_s": n_questions / elapsed,
                     "cached_token_share": cached / prompt}
    out["speedup"] = out["radix_cache"]["questions_per_s"] / out["no_radix_cache"]["questions_per_s"]
    return out


PHASES = {"video": run_video, "image": run_image}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="JSON results (default: stdout only)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (CPU dry run)")
    p.add_argument("--device", default=None)
    p.add_argument("--phases", default="video,image")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--video-length", type=int, default=48, help="frames in each written video")
    p.add_argument("--videos", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--hf-batch", type=int, default=8)
    p.add_argument("--hf-videos", type=int, default=16)
    args = p.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        args.frames, args.video_length, args.new_tokens = 4, 12, 4
    results: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(), "argv": sys.argv,
                               "device": torch.cuda.get_device_name(0)
                               if args.device.startswith("cuda") else "cpu"}
    with tempfile.TemporaryDirectory(prefix="mm-bench-") as tmp:
        for name in args.phases.split(","):
            t0 = time.perf_counter()
            try:
                results[name] = PHASES[name](args, Path(tmp))
            except Exception as e:  # one failing phase must not lose the others' numbers
                results[name] = {"error": f"{type(e).__name__}: {e}",
                                 "traceback": traceback.format_exc()}
            results[name]["wall_s"] = time.perf_counter() - t0
            print(json.dumps({name: results[name]}, indent=1, default=str), flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    return 0 if all("error" not in results[n] for n in args.phases.split(",")) else 1


if __name__ == "__main__":
    sys.exit(main())
