"""Turning the text of a typed `sgl.gen(dtype=...)` into the Python value a reader gets."""

from __future__ import annotations

from typing import Any

_BOOLS = {"true": True, "false": False}


def convert_value(name: str, value: Any, dtype: type | None) -> Any:
    """`value` as `dtype` (int, float or bool); other dtypes and non-str values pass through.

    Conversion happens on read, not when the gen finishes, so text a backend could not constrain
    (an API model ignoring the regex) only fails the read of that variable, not the program.
    """
    if dtype not in (int, float, bool) or not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if dtype is bool:
            return _BOOLS[text.lower()]
        return dtype(text)
    except (KeyError, ValueError):
        raise ValueError(f"variable {name!r}: {value!r} is not a valid {dtype.__name__}") from None
