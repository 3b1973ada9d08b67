"""The runtime tests' toy vision-language model (mm_toy) as an installed distribution, for live
servers that must find it only through entry points."""

from __future__ import annotations

from pathlib import Path

import mm_toy  # the runtime tests' folder is on pytest's pythonpath
from plugin_dist import write_dist_info

# Spawned servers get this folder on their PYTHONPATH to import the toy model.
RUNTIME_TESTS = Path(__file__).resolve().parents[2] / "sglang-runtime" / "tests"

DIST = "sglang_mmtoy"


def write_toy_dist(folder: Path) -> None:
    """An installed distribution's metadata declaring the toy model and its processor."""
    write_dist_info(folder, DIST, {
        "sglang.models": {mm_toy.ARCH: "mm_toy:ToyVLForCausalLM"},
        "sglang.input_processors": {mm_toy.ARCH: "mm_toy:ToyProcessor"},
    })
