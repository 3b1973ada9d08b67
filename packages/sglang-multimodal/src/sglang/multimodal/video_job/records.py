"""One record per finished video, committed to an append-only log; a reader that keeps one per id.

A worker appends each record as one JSON line and fsyncs before it counts the video as done, so a
record that the reader sees survived a crash of the process (and of the machine, as far as the
file system keeps its promise). A process killed mid-write leaves at most a torn last line: the
reader skips it (that video is simply redone) and the next writer cuts it off before appending.

Each process appends to its own file in the records folder (`<output>.records/`): appends from
several processes to one file could interleave. A video may end up with more than one record
(work redone after a crash that came between the fsync and the caller learning of it, two nodes
given overlapping ranks, a retry of a failed video); the reader keeps exactly one per id:
an answer over an error, then the first answer, or the last error (the latest attempt).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

RECORDS_SUFFIX = ".records"
LOG_SUFFIX = ".jsonl"


class Record(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The outcome for one video: an answer, or an error message saying why there is none."""

    id: str
    answer: str | None = None
    error: str | None = None
    # Small values about how the answer came about: tokens, finish reason, attempts, worker.
    meta: dict[str, Any] = {}

    @property
    def ok(self) -> bool:
        return self.error is None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Record).decode


def records_dir(output: Path | str) -> Path:
    """Where the records of the job writing `output` live: `<output>.records/` beside it."""
    out = Path(output)
    return out.with_name(out.name + RECORDS_SUFFIX)


def new_log_path(folder: Path, tag: str) -> Path:
    """A file no other process writes: tagged for people (node rank), unique by host, pid and a
    random suffix, since ranks repeat across restarts and hosts share the folder."""
    host = socket.gethostname().replace(os.sep, "_")
    return folder / f"{tag}-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}{LOG_SUFFIX}"


class RecordLog:
    """Append-only records file of one process: each `append` is on disk when it returns."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115  (held open for the job's lifetime)
        _cut_torn_tail(self._file)
        self.written = 0

    def append(self, record: Record) -> None:
        self._file.write(_encode(record) + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.written += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cut_torn_tail(file: Any, block: int = 1 << 16) -> None:
    """Drop a partial last line (a writer killed mid-append) so the next record starts on a line
    of its own; read backwards from the end, a block at a time, since a log may be long."""
    size = os.fstat(file.fileno()).st_size
    end = size
    with open(file.name, "rb") as f:
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
    if end < size:
        os.truncate(file.name, end)


@dataclass
class RecordSet:
    """The records of a folder, one per id, and what was dropped on the way."""

    by_id: dict[str, Record] = field(default_factory=dict)
    duplicates: int = 0  # records superseded by another record of the same id
    torn_lines: int = 0  # lines that did not decode (a writer killed mid-append)

    def add(self, record: Record) -> None:
        old = self.by_id.get(record.id)
        if old is None:
            self.by_id[record.id] = record
            return
        self.duplicates += 1
        if not old.ok:  # an answer beats an error; a later error is the latest attempt
            self.by_id[record.id] = record

    def finished(self, retry_errors: bool = False) -> set[str]:
        """Ids that need no more work: every recorded id, or only the answered ones."""
        return {i for i, r in self.by_id.items() if r.ok or not retry_errors}


def log_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{LOG_SUFFIX}")) if folder.is_dir() else []


def read_records(paths: Iterable[Path]) -> RecordSet:
    """Every decodable record of `paths` (in order), deduplicated by id."""
    out = RecordSet()
    for path in paths:
        with open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    out.add(_decode(line))
                except msgspec.DecodeError:
                    out.torn_lines += 1
    return out


def read_folder(folder: Path) -> RecordSet:
    return read_records(log_files(folder))
