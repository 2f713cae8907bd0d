"""LogbookReadService: AutoPi's ``GET /logbook/storage/read/``, one field of one device.

Thin by design: check the parameters (``server/telemetry/logbook_query.py``), find the
caller's device and read in one worker-thread unit of work (``server/storage/logbook.py``:
one SQL statement, aggregated in the database), shape the answer as the documented JSON
array (docs/telemetry-reads.md).
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from google.protobuf import struct_pb2
from sqlalchemy.orm import Session
from thingwire.telemetry.v1 import logbook_pb2, logbook_pb2_grpc

from server.auth.principal import Action, require_user
from server.errors import NotFound
from server.state import AppState
from server.storage import logbook
from server.storage.logbook import Bucket, FieldType, GeoPoint, Sample
from server.storage.telemetry import format_timestamp
from server.telemetry.logbook_query import LogbookQuery, parse_query

__all__ = ["DEVICE_NOT_FOUND", "LogbookReadService"]

#: One message for every device the caller may not read, whether or not it exists
#: (DRF's own text for a 404), so that the answer reveals nothing.
DEVICE_NOT_FOUND = "Not found."


def _buckets(rows: list[Bucket]) -> list[dict[str, object]]:
    return [
        {"max_ts": last // 1000, "ts": format_timestamp(first), "value": v}
        for first, last, v in rows
    ]


def _points(rows: list[GeoPoint]) -> list[dict[str, object]]:
    return [
        {"ts": format_timestamp(ts), "location": {"lat": lat, "lon": lon}} for ts, lat, lon in rows
    ]


def _samples(rows: list[Sample]) -> list[dict[str, object]]:
    return [{"ts": format_timestamp(ts), "value": value} for ts, value in rows]


def _read(
    session: Session, user_id: int, may_read: Callable[[str], bool], query: LogbookQuery
) -> struct_pb2.ListValue:
    """The answer to ``query``, built in the worker thread that reads it."""
    device = logbook.find_device(session, user_id, query.device)
    if device is None or not may_read(device.device_id):
        raise NotFound(DEVICE_NOT_FOUND)
    listing = struct_pb2.ListValue()
    if query.aggregation is not None and query.window is not None:
        buckets = logbook.read_aggregated(
            session,
            device.id,
            query.splits,
            query.field_type,
            query.aggregation,
            query.window,
            query.size,
        )
        listing.extend(_buckets(buckets))
        return listing
    if query.field_type is FieldType.GEO_POINT:
        points = logbook.read_points(
            session, device.id, query.splits, query.start_us, query.end_us, query.size
        )
        listing.extend(_points(points))
        return listing
    samples = logbook.read_raw(
        session,
        device.id,
        query.splits,
        query.field_type,
        query.start_us,
        query.end_us,
        query.size,
    )
    listing.extend(_samples(samples))
    return listing


class LogbookReadService(logbook_pb2_grpc.LogbookReadServiceServicer):
    """Implements thingwire.telemetry.v1.LogbookReadService."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def ReadLogbook(
        self, request: logbook_pb2.ReadLogbookRequest, context: grpc.aio.ServicerContext
    ) -> struct_pb2.ListValue:
        principal = require_user()
        query = parse_query(
            device_id=request.device_id,
            field=request.field,
            field_type=request.field_type,
            from_utc=request.from_utc,
            to_utc=request.to_utc,
            aggregation=request.aggregation,
            interval=request.interval,
            size=request.size,
        )

        def may_read(device_id: str) -> bool:
            return principal.allows(Action.READ, device_id)

        return await self._state.database.run(
            lambda s: _read(s, principal.user_id, may_read, query)
        )
