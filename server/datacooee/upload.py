"""The upload document: a JSON:API ``SensorData`` resource in, the stored one echoed out.

The body arrives raw (``google.api.HttpBody``) and is parsed once with orjson, so that one
parser judges every shape and each mistake gets a message naming it (docs/datacooee.md,
"Upload").
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from server.errors import InvalidArgument
from server.storage.input_data import NewPoint, StoredPoint
from server.storage.telemetry import format_timestamp, parse_timestamp

__all__ = [
    "CONTENT_TYPE",
    "MAX_TEXT_CHARS",
    "document_of",
    "number_of",
    "point_of_body",
]

#: JSON:API's media type, which the answer carries.
CONTENT_TYPE = "application/vnd.api+json"
RESOURCE_TYPE = "SensorData"
SENSOR_TYPE = "Sensor"
#: Longest value or x-axis value kept, and longest metadata (as compact JSON).
MAX_TEXT_CHARS = 1024
MAX_METADATA_CHARS = 65_536
#: Deepest nesting of metadata: answers carry it as a protobuf Value, which the gateway
#: parses with a nesting limit of 100.
MAX_METADATA_DEPTH = 32
#: Larger readings are kept as text but are not numbers: sums of them could overflow a
#: double in the database's avg (PostgreSQL raises, SQLite gives infinity, JSON has neither).
MAX_MAGNITUDE = 1e300
# A decimal number as people write one ("12.5", "-3", "1e-3"); what float() also reads
# ("nan", "1_000", " 7 ") is not a number here.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def number_of(value: str) -> float | None:
    """The numeric reading of a value (spaces around it aside), or None when it is not a
    finite decimal number."""
    value = value.strip()
    if len(value) > 64 or not _DECIMAL.fullmatch(value):
        return None
    number = float(value)
    return number if math.isfinite(number) and abs(number) <= MAX_MAGNITUDE else None


def _text(value: object, name: str, *, required: bool) -> str | None:
    """A string or a number as text (a number as its JSON text: 12.5 → "12.5")."""
    if value is None or (value == "" and not required):
        if required:
            raise InvalidArgument(f"data.attributes.{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidArgument(f"data.attributes.{name} must be a string or a number")
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if not text:
        raise InvalidArgument(f"data.attributes.{name} must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgument(f"data.attributes.{name} must be at most {MAX_TEXT_CHARS} characters")
    if "\x00" in text:
        raise InvalidArgument(f"data.attributes.{name} must not contain the NUL character")
    return text


def _coordinate(value: object, name: str, bound: float) -> float | None:
    """A latitude or longitude, sent as a number or a numeric string; null or "" is none."""
    if value is None or value == "":
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        number = number_of(value)
    if number is None or not -bound <= number <= bound:
        raise InvalidArgument(
            f"data.attributes.{name} must be a number from {-bound:g} to {bound:g}"
        )
    return number


def _depth(value: object) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (a scalar is 0)."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            pending.extend(
                (child, level + 1) for child in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def _metadata(value: object) -> str | None:
    """Any JSON value, kept as compact JSON so that it reads back as it was sent."""
    if value is None:
        return None
    if _depth(value) > MAX_METADATA_DEPTH:
        raise InvalidArgument(
            f"data.attributes.metadata must nest at most {MAX_METADATA_DEPTH} levels"
        )
    text = orjson.dumps(value).decode()
    if len(text) > MAX_METADATA_CHARS:
        raise InvalidArgument(
            f"data.attributes.metadata must be at most {MAX_METADATA_CHARS} characters as JSON"
        )
    if "\\u0000" in text:
        raise InvalidArgument("data.attributes.metadata must not contain the NUL character")
    return text


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where} must be a JSON object")
    return value


def _check_sensor(data: dict[str, Any], input_pk: str) -> None:
    """The relationship, when sent, must name the path's input (and be a Sensor)."""
    if "relationships" not in data or data["relationships"] is None:
        return
    relationships = _object(data["relationships"], "data.relationships")
    if relationships.get("sensor") is None:
        return
    sensor = _object(relationships["sensor"], "data.relationships.sensor")
    linked = _object(sensor.get("data"), "data.relationships.sensor.data")
    if linked.get("type", SENSOR_TYPE) != SENSOR_TYPE:
        raise InvalidArgument(f'data.relationships.sensor.data.type must be "{SENSOR_TYPE}"')
    if linked.get("id") != input_pk:
        raise InvalidArgument(
            f"data.relationships.sensor.data.id must be the input of the path ({input_pk!r})"
        )


def point_of_body(body: bytes, input_pk: str) -> NewPoint:
    """The value a JSON:API upload document carries; INVALID_ARGUMENT naming what is wrong.

    ``data.id`` is ignored ("null" in the document's examples): the server assigns ids.
    Unknown attributes are ignored.
    """
    if not body.strip():
        raise InvalidArgument("the body is empty: send a JSON:API document with a data object")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidArgument(f"the body is not valid JSON: {error}") from None
    data = _object(_object(document, "the body").get("data"), "data")
    if data.get("type") != RESOURCE_TYPE:
        raise InvalidArgument(f'data.type must be "{RESOURCE_TYPE}"')
    attributes = _object(data.get("attributes"), "data.attributes")
    _check_sensor(data, input_pk)
    value = _text(attributes.get("value"), "value", required=True)
    assert value is not None
    stamp = attributes.get("timestamp")
    if stamp is None:
        raise InvalidArgument("data.attributes.timestamp is required")
    ts = parse_timestamp(stamp)
    if ts is None:
        raise InvalidArgument(
            "data.attributes.timestamp must be an ISO-8601 date and time, such as "
            '"2020-10-13T14:02:39.489Z"'
        )
    return NewPoint(
        ts=ts,
        value=value,
        number=number_of(value),
        latitude=_coordinate(attributes.get("latitude"), "latitude", 90),
        longitude=_coordinate(attributes.get("longitude"), "longitude", 180),
        meta=_metadata(attributes.get("metadata")),
        x_axis_value=_text(attributes.get("x_axis_value"), "x_axis_value", required=False),
    )


def document_of(point: StoredPoint) -> bytes:
    """The stored value as the JSON:API document the upload answers."""
    attributes: dict[str, Any] = {"timestamp": format_timestamp(point.ts), "value": point.value}
    if point.latitude is not None:
        attributes["latitude"] = point.latitude
    if point.longitude is not None:
        attributes["longitude"] = point.longitude
    if point.meta is not None:
        attributes["metadata"] = orjson.loads(point.meta)
    if point.x_axis_value is not None:
        attributes["x_axis_value"] = point.x_axis_value
    return orjson.dumps(
        {
            "data": {
                "type": RESOURCE_TYPE,
                "id": str(point.id),
                "attributes": attributes,
                "relationships": {"sensor": {"data": {"type": SENSOR_TYPE, "id": point.input_id}}},
            }
        }
    )
