"""Batch video job overhead (issue 17): videos/s through `python -m sglang.multimodal.video_job`
against the same videos through the Engine directly, on one GPU, dummy bf16 weights of the
LLaVA-NeXT-Video-7B shape (`multimodal_bench.write_model`), 16 frames per video.

Both sides ask the same text prompt with greedy decoding; the Engine side gets all videos in one
`generate` call (its best case), the job its usual batches (`--batch-size`, `--inflight`). The
job's number is its summary's `videos_per_s` (first batch handed out to last record committed,
model load excluded), the Engine's is timed around its `generate` call. Both are first calls
after the model load in their process (the job runs as a command, so it has no earlier call to
warm up with); a job run over two other videos first fills the on-disk kernel caches for both.

    python benchmarks/video_job_bench.py --out $OUT/video_job.json
    python benchmarks/video_job_bench.py --tiny          # tiny shapes on the CPU (a dry run)
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from multimodal_bench import video_ref, write_model, write_video  # noqa: E402

QUESTION = "t11 t12 t13 t14 t15 t16 t17 t18 what happens in this video ?"
TEMPLATE = "t1 t2 t3 t4 t5 t6 t7 t8 USER: <video>\n{prompt} ASSISTANT:"


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    """A word-level tokenizer over the dummy model's vocabulary (`t<id>` words; others unknown),
    so both sides can send the same text prompt."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab_size)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0").save_pretrained(
        folder)


def engine_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {"load_format": "dummy", "device": args.device, "context_length": 4096,
            "dtype": "float32" if args.device == "cpu" else "bfloat16", "random_seed": 0}


def sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {"temperature": 0.0, "max_new_tokens": args.new_tokens, "ignore_eos": True}


def run_job(model: Path, videos: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    summary = out.with_suffix(".summary.json")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in engine_flags(args).items()]
    cmd = [sys.executable, "-m", "sglang.multimodal.video_job", "--video-dir", str(videos),
           "--output", str(out), "--model-path", str(model), "--num-frames", str(args.frames),
           "--prompt", QUESTION, "--prompt-template", TEMPLATE, "--batch-size",
           str(args.batch_size), "--inflight", str(args.inflight), "--temperature", "0",
           "--max-new-tokens", str(args.new_tokens), "--ignore-eos", "--no-progress",
           "--summary-json", str(summary), *flags]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the job failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(summary.read_text())
    if result["errors"]:
        raise RuntimeError(f"the job wrote {result['errors']} error rows: {out.read_text()[:2000]}")
    result["process_s"] = time.perf_counter() - t0
    return result


def run_direct(model: Path, paths: list[Path],
               args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    import sglang as sgl

    prompt = TEMPLATE.replace("{prompt}", QUESTION)
    engine = sgl.Engine(model_path=str(model), **engine_flags(args))
    try:
        t0 = time.perf_counter()
        outs = engine.generate([prompt] * len(paths), sampling(args),
                               video_data=[video_ref(p, args.frames) for p in paths])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    finally:
        engine.shutdown()
    assert isinstance(outs, list)
    return ({"videos": len(paths), "seconds": elapsed, "videos_per_s": len(paths) / elapsed,
             "prompt_tokens": outs[0]["meta_info"]["prompt_tokens"]},
            [o["text"] for o in outs])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="JSON results (default: stdout only)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (CPU dry run)")
    p.add_argument("--device", default=None)
    p.add_argument("--videos", type=int, default=None, help="default: 64 (--tiny: 6)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--video-length", type=int, default=48, help="frames in each written video")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16, help="the job's videos per Engine call")
    p.add_argument("--inflight", type=int, default=2, help="the job's Engine calls in flight")
    args = p.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        args.frames, args.video_length, args.new_tokens = 4, 12, 4
    args.videos = args.videos or (6 if args.tiny else 64)
    size = (112, 84) if args.tiny else (480, 360)
    results: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(), "argv": sys.argv,
                               "device": torch.cuda.get_device_name(0)
                               if args.device.startswith("cuda") else "cpu"}
    with tempfile.TemporaryDirectory(prefix="video-job-bench-") as tmp:
        work = Path(tmp)
        model = work / "llava_next_video"
        config = write_model(model, "video", args.tiny)
        write_tokenizer(model, config["text_config"]["vocab_size"])
        (work / "videos").mkdir()
        (work / "warm").mkdir()
        paths = [work / "videos" / f"video{i:03d}.mp4" for i in range(args.videos)]
        warm = [work / "warm" / f"warm{i}.mp4" for i in range(2)]
        for i, path in enumerate(paths + warm):
            write_video(path, i, args.video_length, size)

        run_job(model, work / "warm", work / "warm.csv", args)  # compile caches, not timed
        results["engine"], texts = run_direct(model, paths, args)
        results["job"] = run_job(model, work / "videos", work / "answers.csv", args)
        with open(work / "answers.csv", newline="") as f:
            answers = {r["video_name"]: r["answer"] for r in csv.DictReader(f)}
        results["answers_equal"] = sum(answers.get(p.name) == t for p, t in zip(paths, texts))
    job, direct = results["job"]["videos_per_s"], results["engine"]["videos_per_s"]
    results["overhead_pct"] = 100.0 * (direct / job - 1.0) if job else None
    print(json.dumps(results, indent=1, default=str), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
