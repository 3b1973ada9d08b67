"""Fold the records into the output file: one row per manifest id, in manifest order.

The merged file is written to a temporary name beside the output, fsynced, then renamed over
it, so a reader (or a crash) sees the old file or the new one, never half of one. The check says
which manifest ids have no record; ids recorded but not in the manifest (a video since removed)
are left out of the output and counted.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from sglang.multimodal.video_job.records import Record, RecordSet, read_folder, records_dir

# The seed's columns first, so scripts that read `video_name,answer` keep working.
CSV_COLUMNS = ("video_name", "answer", "error")


def _csv(rows: list[Record]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow((r.id, r.answer or "", r.error or ""))
    return buf.getvalue().encode()


def _jsonl(rows: list[Record]) -> bytes:
    encode = msgspec.json.Encoder().encode
    return b"".join(encode(r) + b"\n" for r in rows)


# Output formats by the output file's suffix.
WRITERS: dict[str, Callable[[list[Record]], bytes]] = {".csv": _csv, ".jsonl": _jsonl}


def output_format(output: Path | str) -> Callable[[list[Record]], bytes]:
    suffix = Path(output).suffix.lower()
    if suffix not in WRITERS:
        raise ValueError(
            f"--output {str(output)!r}: expected one of {', '.join(sorted(WRITERS))} files"
        )
    return WRITERS[suffix]


@dataclass(frozen=True)
class MergeCheck:
    total: int  # manifest ids
    answered: int
    errors: int
    missing: tuple[str, ...]  # manifest ids without a record
    not_in_manifest: int  # recorded ids the manifest no longer has
    duplicates: int  # records dropped because their id already had one

    @property
    def complete(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        text = (f"{self.total} videos: {self.answered} answered, {self.errors} errors, "
                f"{len(self.missing)} missing")
        if self.duplicates:
            text += f" ({self.duplicates} redone records dropped)"
        if self.missing:
            shown = ", ".join(self.missing[:10])
            more = f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else ""
            text += f"; missing: {shown}{more}"
        return text


def check(manifest: list[str], records: RecordSet) -> MergeCheck:
    rows = [records.by_id[i] for i in manifest if i in records.by_id]
    answered = sum(r.ok for r in rows)
    return MergeCheck(
        total=len(manifest), answered=answered, errors=len(rows) - answered,
        missing=tuple(i for i in manifest if i not in records.by_id),
        not_in_manifest=len(set(records.by_id) - set(manifest)),
        duplicates=records.duplicates,
    )


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def merge(manifest: list[str], output: Path | str) -> MergeCheck:
    """Write `output` from the records beside it; rows of missing ids are left out (the check
    names them), so a rerun that fills them in rewrites a complete file."""
    out = Path(output)
    writer = output_format(out)
    records = read_folder(records_dir(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, writer([records.by_id[i] for i in manifest if i in records.by_id]))
    return check(manifest, records)
