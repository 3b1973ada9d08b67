"""Unit tests of the video job's parts: manifest, records log and reader, merge, static split,
prompts and the generated command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest

from sglang.multimodal.video_job import cli
from sglang.multimodal.video_job.manifest import build_manifest
from sglang.multimodal.video_job.merge import merge
from sglang.multimodal.video_job.prompts import Prompter, load_prompts
from sglang.multimodal.video_job.records import (
    Record,
    RecordLog,
    read_folder,
    read_records,
    records_dir,
)
from sglang.multimodal.video_job.static import Split, resolve_split
from sglang.runtime.config import RuntimeArgs


def test_manifest_is_sorted_relative_and_recursive(tmp_path: Path) -> None:
    for name in ("b.mp4", "a/x.MKV", "a/b/c.webm", "z.avi", "m.mov", "notes.txt", "a/x.mp4.part"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert build_manifest(tmp_path) == ["a/b/c.webm", "a/x.MKV", "b.mp4", "m.mov", "z.avi"]
    with pytest.raises(ValueError, match="not a folder"):
        build_manifest(tmp_path / "nope")


def test_log_appends_whole_lines_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with RecordLog(path) as log:
        log.append(Record(id="a", answer="A"))
    with open(path, "ab") as f:
        f.write(b'{"id": "b", "answ')  # a writer killed mid-append
    assert set(read_records([path]).by_id) == {"a"}
    assert read_records([path]).torn_lines == 1
    with RecordLog(path) as log:  # the next writer starts on a clean line
        log.append(Record(id="c", error="bad"))
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "c"]


def test_reader_keeps_one_record_per_id(tmp_path: Path) -> None:
    one, two = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    with RecordLog(one) as log:
        for r in (Record(id="a", error="e1"), Record(id="b", answer="first"),
                  Record(id="c", error="e1")):
            log.append(r)
    with RecordLog(two) as log:
        for r in (Record(id="a", answer="late"), Record(id="b", answer="second"),
                  Record(id="c", error="e2")):
            log.append(r)
    got = read_folder(tmp_path)
    assert got.by_id["a"].answer == "late"  # an answer beats an error
    assert got.by_id["b"].answer == "first"  # the first answer stands
    assert got.by_id["c"].error == "e2"  # the latest error
    assert got.duplicates == 3
    assert got.finished() == {"a", "b", "c"}
    assert got.finished(retry_errors=True) == {"a", "b"}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_merge_one_row_per_manifest_id_and_names_the_missing(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    with RecordLog(records_dir(out) / "x.jsonl") as log:
        for r in (Record(id="v1", answer='say "hi", ok'), Record(id="v3", error="corrupt"),
                  Record(id="v1", answer="again"), Record(id="gone", answer="?")):
            log.append(r)
    result = merge(["v1", "v2", "v3"], out)
    assert result.missing == ("v2",) and not result.complete
    assert (result.answered, result.errors, result.duplicates, result.not_in_manifest) == (1, 1, 1, 1)
    assert "missing: v2" in result.describe()
    text = out.read_text()
    assert text.count("v1") == 1 and "gone" not in text and "again" not in text
    if suffix == ".csv":
        assert text.splitlines()[0] == "video_name,answer,error"
        assert '"say ""hi"", ok"' in text
    else:
        rows = [json.loads(line) for line in text.splitlines()]
        assert [r["id"] for r in rows] == ["v1", "v3"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_merge_refuses_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=".csv, .jsonl"):
        merge(["a"], tmp_path / "out.txt")


@pytest.mark.parametrize(("count", "world"), [(10, 3), (11, 4), (3, 5), (0, 2)])
def test_static_split_covers_the_manifest_exactly(count: int, world: int) -> None:
    manifest = [f"v{i}" for i in range(count)]
    shares = [Split(rank=r, world=world).take(manifest) for r in range(world)]
    flat = [v for share in shares for v in share]
    assert sorted(flat) == sorted(manifest) and len(flat) == len(set(flat))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_split_from_flags_then_torchrun_env() -> None:
    assert resolve_split(4, 1, env={"WORLD_SIZE": "8", "RANK": "3"}) == Split(1, 4)
    assert resolve_split(None, None, env={"WORLD_SIZE": "8", "RANK": "3"}) == Split(3, 8)
    assert resolve_split(None, None, env={}) == Split(0, 1)
    for bad in ((2, None), (2, 2), (0, 0)):
        with pytest.raises(ValueError):
            resolve_split(*bad, env={})
    with pytest.raises(ValueError, match="RANK"):
        resolve_split(None, None, env={"WORLD_SIZE": "2", "RANK": "x"})


def test_prompts_file_and_template(tmp_path: Path) -> None:
    rows = tmp_path / "p.csv"
    rows.write_text('video_name,prompt\na.mp4,"What {happens}?"\n')
    common, per_video = load_prompts(rows)
    prompter = Prompter(common or "Describe.", "USER: <video>\n{prompt} ASSISTANT:", per_video)
    assert prompter("a.mp4") == "USER: <video>\nWhat {happens}? ASSISTANT:"
    assert prompter("b.mp4") == "USER: <video>\nDescribe. ASSISTANT:"
    text = tmp_path / "p.txt"
    text.write_text("Count the cars.\n")
    assert load_prompts(text) == ("Count the cars.", {})
    with pytest.raises(ValueError, match="{prompt}"):
        Prompter("x", "no slot", {})


def test_engine_flags_come_from_runtime_args() -> None:
    parser = cli.build_parser()
    ns = parser.parse_args(["--video-dir", "v", "--output", "o.csv", "--tp", "2", "--dtype",
                            "float16", "--max-new-tokens", "7", "--temperature", "0",
                            "--no-skip-special-tokens", "--answerer-option", "a=b=c"])
    kwargs = cli.engine_kwargs(ns)
    names = {f.name for f in cli.engine_fields()}
    declared = {f.name for f in msgspec.structs.fields(RuntimeArgs)}
    assert names == declared - cli.ENGINE_FIELDS_LEFT_OUT
    assert kwargs["tp_size"] == 2 and kwargs["dtype"] == "float16"
    assert kwargs["mem_fraction_static"] == RuntimeArgs().mem_fraction_static
    sampling = cli.sampling_dict(ns)
    assert sampling["max_new_tokens"] == 7 and sampling["temperature"] == 0.0
    assert sampling["skip_special_tokens"] is False and "n" not in sampling
    assert cli.answerer_options(ns) == {"a": "b=c"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--video-dir", "v", "--output", "o.csv", "--dtype", "int3"])
    ns = parser.parse_args(["--video-dir", "v", "--output", "o.csv", "--top-p", "0"])
    with pytest.raises(ValueError, match="top_p"):
        cli.sampling_dict(ns)


def test_bad_arguments_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "v").mkdir()
    for flags, message in ((["--output", str(tmp_path / "o.txt")], ".csv, .jsonl"),
                           (["--output", str(tmp_path / "o.csv"), "--batch-size", "0"],
                            "--batch-size"),
                           (["--output", str(tmp_path / "o.csv"), "--num-nodes", "2"],
                            "--node-rank")):
        with pytest.raises(SystemExit) as e:
            cli.main(["--video-dir", str(tmp_path / "v"), *flags])
        assert e.value.code == 2
        assert message in capsys.readouterr().err
    assert not os.listdir(tmp_path / "v")


def test_torn_tail_longer_than_a_read_block(tmp_path: Path) -> None:
    from sglang.multimodal.video_job.records import _cut_torn_tail

    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "a", "answer": "A"}\n' + b"x" * 200_000)
    with open(path, "ab") as f:
        _cut_torn_tail(f, block=4096)
    assert path.read_bytes() == b'{"id": "a", "answer": "A"}\n'
    path.write_bytes(b"y" * 10_000)  # not one whole line
    with open(path, "ab") as f:
        _cut_torn_tail(f, block=4096)
    assert path.read_bytes() == b""


def test_ledger_commits_once_and_bounds_worker_deaths(tmp_path: Path) -> None:
    from sglang.multimodal.video_job.answer import VideoTask
    from sglang.multimodal.video_job.progress import Progress, Summary
    from sglang.multimodal.video_job.runner import MAX_WORKER_DEATHS, Ledger

    tasks = [VideoTask(f"v{i}", f"/nowhere/v{i}", "p") for i in range(3)]
    with RecordLog(tmp_path / "r.jsonl") as log:
        ledger = Ledger(log, Progress(Summary(videos=3, skipped=0), enabled=False), retries=1)
        for _ in range(MAX_WORKER_DEATHS - 1):
            assert ledger.worker_died(tasks[:1]) == tasks[:1]  # redone, not recorded
        assert ledger.worker_died(tasks[:1]) == []
        redo = ledger.settle(tasks[1:], [Record(id="v1", answer="A"), Record(id="v2", error="x")])
        assert redo == tasks[2:]  # one retry left
        assert ledger.settle(tasks[2:], [Record(id="v2", error="y")]) == []
        ledger.settle(tasks[1:2], [Record(id="v1", answer="again")])  # never a second record
        assert ledger.raised(tasks, "boom") == [[t] for t in tasks]  # split, nothing recorded
    records = read_records([tmp_path / "r.jsonl"])
    assert records.duplicates == 0
    assert records.by_id["v0"].error == f"the worker died {MAX_WORKER_DEATHS} times while answering this video"
    assert records.by_id["v1"].answer == "A"
    assert (records.by_id["v2"].error, records.by_id["v2"].meta["attempts"]) == ("y", 2)
    assert ledger.progress.summary.answered == 1 and ledger.progress.summary.errors == 2
