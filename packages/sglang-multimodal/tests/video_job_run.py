"""Running the video job as users do (`python -m sglang.multimodal.video_job`, a subprocess) with
the fake answerer, and reading what it wrote."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
# The Engine tests' settings: a small KV pool on the CPU, greedy, a few tokens.
ENGINE_FLAGS = ["--device", "cpu", "--max-total-tokens", "4096", "--debug-check-integrity"]
SAMPLING = {"temperature": 0.0, "max_new_tokens": 4, "ignore_eos": True}
SAMPLING_FLAGS = ["--temperature", "0", "--max-new-tokens", "4", "--ignore-eos"]
FRAMES = 3
REPO = TESTS.parents[2]
FAKE = "video_job_fake:Fake"


def job_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The fake answerer lives beside the tests; torchrun's variables must not leak in.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p)
    for name in ("WORLD_SIZE", "RANK"):
        env.pop(name, None)
    env.update(extra)
    return env


def job_cmd(video_dir: Path, output: Path, *flags: str, fake: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "sglang.multimodal.video_job", "--video-dir", str(video_dir),
           "--output", str(output), "--no-progress", *flags]
    return [*cmd, "--answerer", FAKE] if fake else cmd


def run(cmd: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=job_env(**env), capture_output=True, text=True,
                          timeout=timeout, check=False)


def start(cmd: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, env=job_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def calls(path: Path) -> Counter[str]:
    """How often the fake answered each video (the `calls=` option's file)."""
    return Counter(path.read_text().split()) if path.exists() else Counter()


def engine_answers(model: str, videos: Path, ids: list[str], prompt: str) -> dict[str, Any]:
    """Each video asked alone through the Engine, as a user would without the job: its text,
    or the ValueError the Engine raised."""
    import sglang as sgl
    from sglang.multimodal.video_job.engine_answer import video_ref

    out: dict[str, Any] = {}
    with sgl.Engine(model_path=model, device="cpu", max_total_tokens=4096) as engine:
        for vid in ids:
            try:
                out[vid] = engine.generate(prompt, dict(SAMPLING),
                                           video_data=video_ref(str(videos / vid), FRAMES))["text"]
            except ValueError as e:
                out[vid] = e
    return out
