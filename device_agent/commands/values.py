"""Checks on JSON values that arrive as command arguments, shared by the commands.

Arguments come from JSON, sometimes carried through protobuf's `Struct`, where every number
is a double: a whole-valued float (2.0) therefore counts as an integer. A bool never counts
as a number, although Python's `bool` is an `int`.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["as_int", "as_seconds", "kind"]


def kind(value: Any) -> str:
    """A JSON type's name for error messages ("a boolean", "an array")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def as_int(value: Any) -> int | None:
    """`value` as an int if it is one (or a whole-valued float), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def as_seconds(value: Any) -> float | None:
    """`value` as a finite number of seconds, or None if it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) else None
