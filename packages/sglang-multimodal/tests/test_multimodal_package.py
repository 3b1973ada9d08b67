"""Smoke test of the sglang-multimodal package layout."""

import sglang
import sglang.multimodal


def test_multimodal_is_part_of_the_sglang_namespace() -> None:
    assert sglang.multimodal.__version__ == "0.1.0"
    assert hasattr(sglang, "__version__")  # sglang/__init__.py comes from sglang-lang
