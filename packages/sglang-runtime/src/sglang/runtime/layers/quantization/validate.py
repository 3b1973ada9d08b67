"""The one error message for an unsupported quantization setting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_value(method: str, field: str, value: Any, supported: Sequence[Any]) -> None:
    if value not in supported:
        raise ValueError(f"{method} quantization: unsupported {field}={value!r}; "
                         f"supported: {', '.join(map(str, supported))}")
