"""TelemetryPushService (devices posting batches over HTTP) and RejectedRecordService (what
was set aside from them), per docs/telemetry-ingest.md.

Thin by design: the body is inflated and parsed once (`server.telemetry.push_body`), split
into usable and rejected records (`server.storage.telemetry.split_batch`), and handed to the
group commit (`AppState.telemetry`); the answer goes out only after the commit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from datetime import UTC, datetime

import grpc
from google.protobuf import timestamp_pb2
from sqlalchemy.orm import Session
from thingwire.telemetry.v1 import push_pb2, push_pb2_grpc

from server import errors
from server.auth.principal import Action, require_device, require_path_user, require_user
from server.request_origin import metadata_of
from server.state import AppState
from server.storage import devices, rejects
from server.storage.telemetry import Split, split_batch
from server.telemetry.push_body import inflate, parse_records

__all__ = ["RejectedRecordService", "TelemetryPushService", "page_token", "parse_page_token"]

log = logging.getLogger(__name__)

#: Where a pushed record's rejects say it came from.
SOURCE = "http"
NOT_STORED = "the batch could not be stored now; retry later"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_TOKEN_PREFIX = b"rejects:"
#: Bodies larger than this (and every compressed one) are prepared in a worker thread.
OFF_LOOP_BYTES = 64 * 1024
#: The largest row id (a signed 64-bit integer on both databases).
MAX_ROW_ID = 2**63 - 1
BAD_PAGE_TOKEN = "invalid page_token: pass the next_page_token of the previous page"  # noqa: S105


def prepare(body: bytes, encoding: str | None, limit: int) -> Split:
    """A push body as the writer takes it: inflated, parsed once, split (see the module)."""
    return split_batch(parse_records(inflate(body, encoding, limit)))


class TelemetryPushService(push_pb2_grpc.TelemetryPushServiceServicer):
    """Implements thingwire.telemetry.v1.TelemetryPushService."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def PushRecords(
        self, request: push_pb2.PushRecordsRequest, context: grpc.aio.ServicerContext
    ) -> push_pb2.PushRecordsResponse:
        device = require_device()
        encoding = metadata_of(context).get("content-encoding")
        body = request.body.data
        limit = self._state.telemetry_limits.max_batch_bytes
        if len(body) > OFF_LOOP_BYTES or encoding:
            # Megabytes of JSON take tens of milliseconds to inflate, parse and split: off
            # the event loop, which carries every device link and call meanwhile.
            split = await asyncio.to_thread(prepare, body, encoding, limit)
        else:
            split = prepare(body, encoding, limit)
        try:
            outcome = await self._state.telemetry.write(device.device_pk, split, SOURCE)
        except errors.ThingwireError:
            raise
        except Exception:
            # The device keeps the batch and retries on a 5xx; nothing was acknowledged.
            log.exception("storing a batch of device %s failed", device.device_pk)
            raise errors.Unavailable(NOT_STORED) from None
        return push_pb2.PushRecordsResponse(
            stored=outcome.new, repeats=outcome.repeats, rejected=outcome.rejected
        )


def page_token(last_id: int) -> str:
    """The opaque token of the page after the row ``last_id``."""
    return base64.urlsafe_b64encode(_TOKEN_PREFIX + str(last_id).encode()).decode()


def parse_page_token(token: str) -> int | None:
    """The id a page token continues below; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise errors.InvalidArgument(BAD_PAGE_TOKEN) from None
    digits = raw.removeprefix(_TOKEN_PREFIX)
    # Row ids are 64-bit: 19 digits may still exceed them, which the database cannot bind.
    if digits == raw or not digits.isdigit() or len(digits) > 19 or int(digits) > MAX_ROW_ID:
        raise errors.InvalidArgument(BAD_PAGE_TOKEN)
    return int(digits)


def receive_time(received_ts: int) -> timestamp_pb2.Timestamp:
    """Epoch microseconds as a protobuf Timestamp."""
    seconds, micros = divmod(received_ts, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def received_iso(received_ts: int) -> str:
    """Epoch microseconds as ISO 8601 UTC text (the CLI's form)."""
    return datetime.fromtimestamp(received_ts / 1_000_000, UTC).isoformat()


class RejectedRecordService(push_pb2_grpc.RejectedRecordServiceServicer):
    """Implements thingwire.telemetry.v1.RejectedRecordService."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def ListRejectedRecords(
        self, request: push_pb2.ListRejectedRecordsRequest, context: grpc.aio.ServicerContext
    ) -> push_pb2.ListRejectedRecordsResponse:
        principal = require_user()
        require_path_user(principal, request.user_id)
        if request.page_size < 0:
            raise errors.InvalidArgument("page_size must not be negative")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        before = parse_page_token(request.page_token)
        device_id = request.device_id
        if not principal.allows(Action.READ, device_id):
            # A token that may not read the device sees what a stranger sees.
            raise errors.NotFound(f"device {device_id!r} not found")

        def read(session: Session) -> rejects.RejectPage:
            device = devices.get_device(session, principal.user_id, device_id)
            return rejects.list_rejects(session, device.id, size, before)

        page = await self._state.database.run(read)
        return push_pb2.ListRejectedRecordsResponse(
            rejected_records=[
                push_pb2.RejectedRecord(
                    position=row.position,
                    reason=row.reason,
                    record=row.record,
                    receive_time=receive_time(row.received_ts),
                    source=row.source,
                )
                for row in page.rows
            ],
            next_page_token=page_token(page.rows[-1].id) if page.more else "",
            total_size=page.total,
        )
