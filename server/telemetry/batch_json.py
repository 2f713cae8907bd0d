"""A batch's JSON, parsed with orjson, and again with the standard parser where orjson
refuses JSON that is valid (docs/telemetry-ingest.md, "Values orjson refuses").

orjson refuses a whole document for one number beyond a double (``1e400``) or one lone
surrogate escape (``"\\ud800"``), though both are JSON by its grammar (RFC 8259). Refusing
the batch for one such value would block a device for good (it retries the same batch), so
such a document is parsed again by ``json``, and the value becomes one that ``split_batch``
cannot store: its record is set aside, the others stored. ``NaN`` and ``Infinity`` are not
JSON, but Python's own ``json.dumps`` writes them for a float reading that has none, and
devices running Python send them: they are read the same way, so one sensor without a
reading costs its record, not the batch. What neither parser reads (bytes that are not
UTF-8, broken syntax, nesting too deep) stays an error.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["UnrepresentableNumber", "loads"]

# The integers orjson keeps as integers; it reads the others as doubles.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


class UnrepresentableNumber:
    """A JSON number beyond a double: no JSON writer takes it, so its record is set aside
    ("fields are not representable as JSON") and shown as its text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text[:64]


def _float(text: str) -> float | UnrepresentableNumber:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        return UnrepresentableNumber(text)
    return value


def _int(text: str) -> int | float | UnrepresentableNumber:
    try:
        value = int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return UnrepresentableNumber(text)
    if _INT_MIN <= value <= _INT_MAX:
        return value
    return _float(text)  # as orjson does: a double, if one holds it


def _constant(name: str) -> UnrepresentableNumber:
    """``NaN``, ``Infinity`` or ``-Infinity``: kept as its text, so its record is set aside."""
    return UnrepresentableNumber(name)


def loads(data: bytes) -> Any:
    """``data`` parsed; orjson.JSONDecodeError (orjson's own) when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        refused = error
    try:
        text = data.decode("utf-8")
        return json.loads(text, parse_float=_float, parse_int=_int, parse_constant=_constant)
    except (ValueError, RecursionError):
        raise refused from None
