"""Smoke test of the sglang-kernels package layout."""

import importlib.util

import sglang
import sglang.kernels


def test_kernels_is_part_of_the_sglang_namespace() -> None:
    assert sglang.kernels.__version__ == "0.1.0"
    assert importlib.util.find_spec("sglang.kernels") is not None
    assert sglang.kernels.__name__ == "sglang.kernels"
