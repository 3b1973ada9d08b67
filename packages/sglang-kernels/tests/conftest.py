"""Fixtures shared by the kernel tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sglang.kernels import tuning


@pytest.fixture
def override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty tuning-table folder (`SGLANG_KERNEL_TUNING_DIR`) in place of the shipped one."""
    monkeypatch.setenv(tuning.TUNING_DIR_ENV, str(tmp_path))
    tuning.load_table.cache_clear()
    yield tmp_path
    tuning.load_table.cache_clear()
