"""Telemetry uploads on one device link: each batch stored through the writer, then answered.

The stream's reader hands every Upload to `Uploads.receive`, which never waits: the batch
is parsed (orjson, off the event loop) and written (`TelemetryWriter.write`) in a task of
its own, so a batch being stored never delays the Results of resource calls on the same
stream. The device is answered UploadAck only after `write` returned, i.e. after the
batch's records, rejects and batch id were committed together; it deletes the batch then
(docs/device-link.md, "Telemetry uploads").

Every answer leaves the device a way forward, so that no batch blocks its outbox forever:
a storage failure or a full link says "the same batch, later"; a batch over the limits says
"split it"; a batch that is not a JSON array is set aside whole (an operator sees it with
the other rejects) and acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from thingwire.agent.v1 import agent_pb2

from server import errors
from server.link.link import Link
from server.storage.telemetry import MAX_BATCH_ID_LENGTH, Rejected, Split, split_batch
from server.telemetry import batch_json
from server.telemetry.writer import TelemetryWriter

log = logging.getLogger(__name__)

Failure = agent_pb2.UploadFailure
#: Milliseconds a device waits at least after a failed write (its backoff may add more).
STORAGE_RETRY_MS = 1000
#: Milliseconds a device waits after being told the link has too many uploads in flight.
BUSY_RETRY_MS = 200
BAD_BATCH_ID = f"an Upload's batch id has 1 to {MAX_BATCH_ID_LENGTH} printable characters"


class TooManyRecords(Exception):
    """A batch holds more records than one Upload may."""


def parse_upload(raw: bytes, max_records: int) -> Split:
    """An Upload's records split into usable and rejected ones.

    A batch that is not a JSON array cannot be split into records, and sending it again
    would not change that: it is set aside whole, as one reject at position 0, so the
    device is acknowledged and an operator still sees what came. TooManyRecords past
    ``max_records``.
    """
    try:
        batch: Any = batch_json.loads(raw)
    except orjson.JSONDecodeError as error:
        return _set_aside(raw, f"the batch is not JSON: {error}")
    if not isinstance(batch, list):
        return _set_aside(raw, f"the batch is a JSON {type(batch).__name__}, not an array")
    if len(batch) > max_records:
        raise TooManyRecords(f"{len(batch)} records, more than {max_records}")
    return split_batch(batch)


def _set_aside(raw: bytes, reason: str) -> Split:
    # The stored reject is cut to a few KiB (store_rejects): enough to see what came.
    return Split([], [Rejected(0, reason[:200], raw[:8192].decode("utf-8", "replace"))])


def _valid_batch_id(batch_id: str) -> bool:
    return 0 < len(batch_id) <= MAX_BATCH_ID_LENGTH and batch_id.isprintable()


class Uploads:
    """The uploads of one link: at most ``max_in_flight`` being stored at once."""

    def __init__(
        self,
        link: Link,
        writer: TelemetryWriter,
        *,
        max_bytes: int,
        max_records: int,
        max_in_flight: int,
    ) -> None:
        self._link = link
        self._writer = writer
        self._max_bytes = max_bytes
        self._max_records = max_records
        self._max_in_flight = max_in_flight
        #: The tasks storing batches; each removes itself when done.
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def finish(self) -> None:
        """Wait for the batches being stored: what the server received is stored even if
        the link closed meanwhile (the device's resend is then a cheap repeat), and a
        stopping server hands the writer nothing after it stopped."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def receive(self, upload: agent_pb2.Upload) -> None:
        """Start storing one batch, or answer at once why not.

        InvalidArgument for a batch id no agent makes (the reader ends the stream): it
        could not be answered in a way the device would recognise.
        """
        batch_id = upload.batch_id
        if not _valid_batch_id(batch_id):
            raise errors.InvalidArgument(BAD_BATCH_ID)
        if len(self._tasks) >= self._max_in_flight:
            # Refused, not queued: reading on while it waits keeps Results flowing, and a
            # queue would let one device hold unbounded memory.
            self._fail(
                batch_id,
                Failure.UPLOAD_FAILURE_BUSY,
                BUSY_RETRY_MS,
                f"the limit of uploads stored at once on a link ({self._max_in_flight}) is reached",
            )
            return
        if len(upload.records) > self._max_bytes:
            self._fail(
                batch_id,
                Failure.UPLOAD_FAILURE_TOO_LARGE,
                0,
                f"the batch has {len(upload.records)} bytes, more than {self._max_bytes}",
            )
            return
        task = asyncio.create_task(self._store(batch_id, upload.records))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self, batch_id: str, raw: bytes) -> None:
        try:
            # Parsing and checking thousands of records takes milliseconds: off the loop.
            split = await asyncio.to_thread(parse_upload, raw, self._max_records)
        except TooManyRecords as error:
            self._fail(batch_id, Failure.UPLOAD_FAILURE_TOO_LARGE, 0, f"the batch has {error}")
            return
        try:
            outcome = await self._writer.write(self._link.device_pk, split, "link", batch_id)
        except Exception:  # the database failed: the device keeps the batch and retries
            log.exception("storing batch %r of %s failed", batch_id, self._link.key)
            self._fail(
                batch_id,
                Failure.UPLOAD_FAILURE_STORAGE,
                STORAGE_RETRY_MS,
                "the server could not store the batch",
            )
            return
        ack = agent_pb2.UploadAck(
            batch_id=batch_id,
            stored=outcome.new,
            repeats=outcome.repeats,
            rejected=outcome.rejected,
            repeated_batch=outcome.batch_repeat,
        )
        self._link.send(agent_pb2.ConnectResponse(upload_ack=ack))

    def _fail(
        self, batch_id: str, failure: agent_pb2.UploadFailure, retry_after_ms: int, reason: str
    ) -> None:
        failed = agent_pb2.UploadFailed(
            batch_id=batch_id, retry_after_ms=retry_after_ms, reason=reason, failure=failure
        )
        self._link.send(agent_pb2.ConnectResponse(upload_failed=failed))
