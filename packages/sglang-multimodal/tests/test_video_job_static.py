"""The video job as users run it (a subprocess per node, the fake answerer): the static split run
side by side, resuming after SIGKILL, reruns, retries and error rows, and the seed's wrapper."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from video_job_fake import expected_answer
from video_job_media import video_folder
from video_job_run import REPO, calls, job_cmd, read_csv, run, start

from sglang.multimodal.video_job.prompts import DEFAULT_PROMPT, DEFAULT_TEMPLATE
from sglang.multimodal.video_job.records import log_files, read_folder, records_dir

PROMPT = DEFAULT_TEMPLATE.replace("{prompt}", DEFAULT_PROMPT)
WRAPPER = REPO / "examples" / "quick_start" / "srt_example_llava_v.sh"


def assert_exactly_once(rows: list[dict[str, str]], ids: list[str], video_dir: Path,
                        errors: tuple[str, ...] = ()) -> None:
    assert [r["video_name"] for r in rows] == ids  # each once, in manifest order
    for r in rows:
        if r["video_name"] in errors:
            assert r["error"] and not r["answer"]
        else:
            assert r["answer"] == expected_answer(video_dir / r["video_name"], PROMPT)
            assert not r["error"]


def raw_record_counts(output: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in log_files(records_dir(output)):
        for line in path.read_text().splitlines():
            rid = json.loads(line)["id"]
            counts[rid] = counts.get(rid, 0) + 1
    return counts


@pytest.mark.parametrize(("count", "world", "via"), [(10, 3, "flags"), (11, 4, "torchrun")])
def test_static_nodes_side_by_side(tmp_path: Path, count: int, world: int, via: str) -> None:
    videos, out = tmp_path / "videos", tmp_path / "out" / "answers.csv"
    ids = video_folder(videos, count)
    procs = []
    for rank in range(world):
        if via == "flags":
            procs.append(start(job_cmd(videos, out, "--num-nodes", str(world),
                                       "--node-rank", str(rank), "--batch-size", "2")))
        else:  # torchrun's environment instead of flags
            procs.append(start(job_cmd(videos, out, "--batch-size", "2"),
                               WORLD_SIZE=str(world), RANK=str(rank)))
    for proc in procs:
        stdout, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, stdout
    merged = run(job_cmd(videos, out, "--merge"))
    assert merged.returncode == 0, merged.stderr
    assert f"{count} videos: {count} answered, 0 errors, 0 missing" in merged.stderr
    assert_exactly_once(read_csv(out), ids, videos)
    assert len(log_files(records_dir(out))) == world  # one records file per node
    assert set(raw_record_counts(out).values()) == {1}


def test_merge_names_missing_videos_until_every_node_ran(tmp_path: Path) -> None:
    videos, out = tmp_path / "videos", tmp_path / "answers.csv"
    ids = video_folder(videos, 5)
    first = run(job_cmd(videos, out, "--num-nodes", "2", "--node-rank", "0"))
    assert first.returncode == 0 and "--merge" in first.stderr and not out.exists()
    merged = run(job_cmd(videos, out, "--merge"))
    assert merged.returncode == 1
    assert "missing: " + ", ".join(ids[1::2]) in merged.stderr
    assert [r["video_name"] for r in read_csv(out)] == ids[0::2]
    second = run(job_cmd(videos, out, "--num-nodes", "2", "--node-rank", "1"))
    assert second.returncode == 0  # the node that completes the manifest merges
    assert_exactly_once(read_csv(out), ids, videos)


def test_rerun_over_a_finished_output_does_no_model_work(tmp_path: Path) -> None:
    videos, out, log = tmp_path / "videos", tmp_path / "answers.jsonl", tmp_path / "calls"
    ids = video_folder(videos, 6, corrupt=(4,))
    flags = ("--answerer-option", f"calls={log}")
    first = run(job_cmd(videos, out, *flags))
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    assert calls(log) == {i: 1 for i in ids}
    again = run(job_cmd(videos, out, *flags))
    assert again.returncode == 0, again.stderr
    assert "6 already done" in again.stderr
    assert calls(log) == {i: 1 for i in ids}  # nothing answered twice
    assert out.read_bytes() == before
    assert len(log_files(records_dir(out))) == 1  # and no empty records file added


def test_sigkill_mid_job_then_restart_answers_each_video_once(tmp_path: Path) -> None:
    videos, out, log = tmp_path / "videos", tmp_path / "answers.csv", tmp_path / "calls"
    ids = video_folder(videos, 12)
    cmd = job_cmd(videos, out, "--batch-size", "2", "--answerer-option", "delay=0.1",
                  "--answerer-option", f"calls={log}")
    proc = start(cmd)
    deadline = time.monotonic() + 60
    while len(read_folder(records_dir(out)).by_id) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    recorded = set(read_folder(records_dir(out)).by_id)
    assert 4 <= len(recorded) < len(ids)
    assert not out.exists()  # no merged file from a job that did not finish

    restarted = run(cmd)
    assert restarted.returncode == 0, restarted.stderr
    assert_exactly_once(read_csv(out), ids, videos)
    assert raw_record_counts(out) == {i: 1 for i in ids}  # work redone, records never
    done_twice = {i for i, n in calls(log).items() if n > 1}
    assert not done_twice & recorded  # committed videos were not asked again


def test_self_killed_answerer_then_restart(tmp_path: Path) -> None:
    videos, out = tmp_path / "videos", tmp_path / "answers.csv"
    ids = video_folder(videos, 7)
    cmd = job_cmd(videos, out, "--batch-size", "3", "--inflight", "1",
                  "--answerer-option", f"crash={ids[4]}",
                  "--answerer-option", f"marker={tmp_path / 'crashed'}")
    first = run(cmd)
    assert first.returncode == -signal.SIGKILL
    assert set(read_folder(records_dir(out)).by_id) == set(ids[:3])  # the first batch only
    second = run(cmd)
    assert second.returncode == 0, second.stderr
    assert_exactly_once(read_csv(out), ids, videos)
    assert raw_record_counts(out) == {i: 1 for i in ids}


def test_retries_error_rows_and_retry_errors(tmp_path: Path) -> None:
    videos, out, log = tmp_path / "videos", tmp_path / "answers.jsonl", tmp_path / "calls"
    ids = video_folder(videos, 6, corrupt=(5,))
    always, flaky, corrupt = ids[0], ids[2], "more/clip05.mp4"
    cmd = job_cmd(videos, out, "--retries", "2", "--answerer-option", f"fail={always}",
                  "--answerer-option", f"flaky={flaky}", "--answerer-option", f"calls={log}")
    result = run(cmd)
    assert result.returncode == 0, result.stderr  # error rows are results, not a failed job
    assert "6 videos: 4 answered, 2 errors, 0 missing" in result.stderr
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows[always]["error"] == f"told to fail {always}"
    assert rows[always]["meta"]["attempts"] == 3
    assert rows[flaky]["answer"] and rows[flaky]["meta"]["attempts"] == 2
    assert "cannot decode" in rows[corrupt]["error"]
    assert calls(log)[always] == 3 and calls(log)[ids[1]] == 1

    again = run([*cmd, "--retry-errors", "--retries", "0"])
    assert again.returncode == 0
    assert calls(log)[always] == 4 and calls(log)[corrupt] == 4 and calls(log)[flaky] == 2


def test_seed_wrapper_two_nodes_then_merge(tmp_path: Path) -> None:
    videos, out = tmp_path / "videos", tmp_path / "results" / "final.csv"
    ids = video_folder(videos, 5, corrupt=(3,))
    extra = ["--answerer", "video_job_fake:Fake", "--no-progress"]
    for node in ("0", "1"):
        done = subprocess.run(["bash", str(WRAPPER), "2", node, str(videos), "unused-model", "8",
                               *extra], env=_env(out), capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
    merged = subprocess.run(["bash", str(WRAPPER), "2", "0", str(videos), "unused-model", "8",
                             "--merge", *extra], env=_env(out), capture_output=True, text=True,
                            timeout=120, check=False)
    assert merged.returncode == 0, merged.stderr
    assert_exactly_once(read_csv(out), ids, videos, errors=("clip03.mp4",))
    bad = subprocess.run(["bash", str(WRAPPER), "2", "0"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and "usage" in bad.stderr


def _env(out: Path) -> dict[str, str]:
    import sys

    from video_job_run import job_env

    return job_env(OUTPUT=str(out), PYTHON=sys.executable)


def test_an_answerer_that_raises_spoils_only_its_video(tmp_path: Path) -> None:
    """In process: a batch whose answer() raises is redone video by video, so only the video
    that makes it raise ends as an error row (after its retries)."""
    from sglang.multimodal.video_job import cli

    videos, out = tmp_path / "videos", tmp_path / "answers.jsonl"
    ids = video_folder(videos, 6)
    bad = ids[1]
    argv = ["--video-dir", str(videos), "--output", str(out), "--no-progress", "--answerer",
            "video_job_fake:Fake", "--batch-size", "3", "--retries", "1",
            "--answerer-option", f"raise={bad}"]
    assert cli.main(argv) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert list(rows) == ids
    assert rows[bad]["error"] == f"RuntimeError: raised for ['{bad}']"
    assert rows[bad]["meta"]["attempts"] == 2
    assert all(rows[i]["answer"] for i in ids if i != bad)
