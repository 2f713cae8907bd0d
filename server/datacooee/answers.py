"""The fetch endpoints' answers, in the document's shapes (docs/datacooee.md, "Answers").

By inputs: ``[{"input":{"id","name","measure_unit"},"inputdata":[…]}]``; by asset:
``{"id","name","inputs":[…the same…]}``. A value is ``{"timestamp","value"}`` plus the
fields its request asked for; a statistics entry is ``{"min","max","avg"}`` (those asked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from google.api import httpbody_pb2

from server.datacooee.params import Fetch
from server.storage.input_data import InputInfo, StoredPoint
from server.storage.telemetry import format_timestamp

__all__ = ["JSON", "asset_body", "json_body", "statistics_list", "values_list"]

JSON = "application/json"


def _input(info: InputInfo) -> dict[str, str]:
    return {"id": info.id, "name": info.name, "measure_unit": info.measure_unit}


def _value(point: StoredPoint, fetch: Fetch) -> dict[str, Any]:
    entry: dict[str, Any] = {"timestamp": format_timestamp(point.ts), "value": point.value}
    if fetch.include_location:
        entry["latitude"] = point.latitude
        entry["longitude"] = point.longitude
    if fetch.include_metadata:
        entry["metadata"] = None if point.meta is None else orjson.loads(point.meta)
    if fetch.include_x_axis_value:
        entry["x_axis_value"] = point.x_axis_value
    return entry


def json_body(document: object) -> httpbody_pb2.HttpBody:
    """An answer: its JSON written once, in the order the document shows its keys."""
    return httpbody_pb2.HttpBody(content_type=JSON, data=orjson.dumps(document))


def asset_body(
    asset_id: int, name: str, entries: Sequence[dict[str, Any]]
) -> httpbody_pb2.HttpBody:
    """A by-asset answer: the asset and its inputs' entries."""
    return json_body({"id": asset_id, "name": name, "inputs": entries})


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
