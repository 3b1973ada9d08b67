"""Root pytest configuration shared by every package's tests.

- Tests marked ``@pytest.mark.gpu`` are skipped unless ``torch.cuda.is_available()``. torch is
  imported only when such a test was collected: sglang-lang's tests run without torch.
- A run that collects no test says so loudly (pytest exits 5, which CI treats as a failure).
- Without an NVIDIA GPU, Triton kernels run in Triton's CPU interpreter: ``TRITON_INTERPRET=1``
  is set here, before any test module imports triton (triton reads it when a kernel is defined).
  The GPU is detected from the driver's device files, so that importing this file stays torch-free.
"""

from __future__ import annotations

import os

import pytest


def _nvidia_gpu_present() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


if not _nvidia_gpu_present():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items or _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip_gpu)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "ERROR: pytest collected no tests (exit code 5); this counts as a failure."
        if reporter is not None:
            reporter.write_line(message, red=True, bold=True)
        else:
            print(message)
