"""The fetch endpoints' answers, in the document's shapes (docs/datacooee.md, "Answers").

By inputs: ``[{"input":{"id","name","measure_unit"},"inputdata":[…]}]``; by asset:
``{"id","name","inputs":[…the same…]}``. A value is ``{"timestamp","value"}`` plus the
fields its request asked for; a statistics entry is ``{"min","max","avg"}`` (those asked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from google.protobuf import struct_pb2

from server.datacooee.params import Fetch
from server.datacooee.upload import iso_micros
from server.storage.input_data import InputInfo, StoredPoint

__all__ = ["series_list", "statistics_list", "values_list"]


def _input(info: InputInfo) -> dict[str, str]:
    return {"id": info.id, "name": info.name, "measure_unit": info.measure_unit}


def _value(point: StoredPoint, fetch: Fetch) -> dict[str, Any]:
    entry: dict[str, Any] = {"timestamp": iso_micros(point.ts), "value": point.value}
    if fetch.include_location:
        entry["latitude"] = point.latitude
        entry["longitude"] = point.longitude
    if fetch.include_metadata:
        entry["metadata"] = None if point.meta is None else orjson.loads(point.meta)
    if fetch.include_x_axis_value:
        entry["x_axis_value"] = point.x_axis_value
    return entry


def series_list(entries: Sequence[dict[str, Any]]) -> struct_pb2.ListValue:
    """The top-level JSON array of the by-inputs answers (and the asset's "inputs")."""
    answer = struct_pb2.ListValue()
    answer.extend(entries)
    return answer


def values_list(
    inputs: Sequence[InputInfo], points: Mapping[str, Sequence[StoredPoint]], fetch: Fetch
) -> list[dict[str, Any]]:
    """One entry per input with its values."""
    return [
        {"input": _input(info), "inputdata": [_value(p, fetch) for p in points[info.id]]}
        for info in inputs
    ]


def statistics_list(
    inputs: Sequence[InputInfo], stats: Mapping[str, Mapping[str, float | None]]
) -> list[dict[str, Any]]:
    """One entry per input with its one statistics object."""
    return [{"input": _input(info), "inputdata": [dict(stats[info.id])]} for info in inputs]
