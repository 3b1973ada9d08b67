"""Write an installed distribution's metadata (a `*.dist-info` folder) declaring entry points, so
that tests can show plug-ins found the way a `pip install` makes them found, in this process
(with the folder on sys.path) and in spawned ones (with it on PYTHONPATH)."""

from __future__ import annotations

from pathlib import Path


def write_dist_info(folder: Path, name: str, entry_points: dict[str, dict[str, str]]) -> Path:
    """`entry_points`: group -> {entry name: "module:attr"}. Returns the dist-info folder."""
    info = folder / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    sections = [
        f"[{group}]\n" + "".join(f"{key} = {target}\n" for key, target in entries.items())
        for group, entries in entry_points.items()
    ]
    (info / "entry_points.txt").write_text("\n".join(sections))
    return info
