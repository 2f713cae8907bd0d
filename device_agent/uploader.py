"""Uploads the outbox's batches over the link while it is up (docs/device-link.md).

One `Uploader` per agent; `run` lasts one link (the agent starts it after the Welcome and
cancels it when the link ends). It keeps up to the Welcome's `max_uploads_in_flight`
batches in flight, oldest first, and acts on each answer:

- UploadAck: the batch is stored in the cloud; it is deleted from the outbox.
- UploadFailed STORAGE or BUSY: nothing is sent for the longer of the server's delay and
  the backoff's (exponential, full jitter; reset by the next ack). The failed batch (same
  id, same bytes) then waits on its own a little longer each time it fails (2, 4, 8 … 60 s),
  while newer batches go ahead: one batch the cloud cannot store holds back no other.
- UploadFailed TOO_LARGE: the batch is split into batches that fit the limits.

A lost link loses nothing: unanswered batches stay in the outbox and go first on the next
link, with the ids they were formed with.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable

from thingwire.agent.v1 import agent_pb2

from device_agent.backoff import Backoff
from device_agent.outbox import Outbox

log = logging.getLogger(__name__)

Failure = agent_pb2.UploadFailure
#: Used when a Welcome tells no limits (a server older than uploads says 0).
DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_MAX_RECORDS = 1000
#: Retry delays after failed uploads: longer than the link's, a database may take a while.
UPLOAD_BACKOFF = Backoff(base_s=1.0, cap_s=60.0)
#: Seconds before trying again after the outbox's own file failed.
FILE_RETRY_S = 5.0

Send = Callable[[agent_pb2.ConnectRequest], None]


class Uploader:
    """Sends an outbox's batches on the link and deletes those the cloud acknowledged."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        batch_records: int = 1000,
        linger_s: float = 1.0,
        backoff: Backoff = UPLOAD_BACKOFF,
    ) -> None:
        """``batch_records`` is the size of a new batch (the Welcome's limit caps it);
        a batch smaller than that is formed once its oldest record waited ``linger_s``."""
        self._outbox = outbox
        self._batch_records = batch_records
        self._linger_s = linger_s
        self._backoff = backoff
        self._answers: collections.deque[agent_pb2.ConnectResponse] = collections.deque()
        self._wake = asyncio.Event()
        #: Failed uploads since the last ack: the backoff's attempt.
        self._attempt = 0
        #: Per batch that failed: how often in a row, and when it may go again.
        self._failures: dict[str, int] = {}
        self._deferred: dict[str, float] = {}
        #: Batches acknowledged and records stored so far (for logs and tests).
        self.acked = 0
        self.stored = 0

    def answer(self, message: agent_pb2.ConnectResponse) -> None:
        """An UploadAck or UploadFailed from the stream; handled by `run`."""
        self._answers.append(message)
        self._wake.set()

    async def run(self, welcome: agent_pb2.Welcome, send: Send) -> None:
        """Upload until cancelled (the link ended)."""
        max_bytes = welcome.max_upload_bytes or DEFAULT_MAX_BYTES
        max_records = min(self._batch_records, welcome.max_upload_records or DEFAULT_MAX_RECORDS)
        max_in_flight = max(1, welcome.max_uploads_in_flight or 1)
        in_flight: dict[str, int] = {}  # batch id → records
        paused_until = 0.0
        form_at: float | None = None
        self._answers.clear()
        self._outbox.listeners.append(self._wake.set)
        try:
            while True:
                self._wake.clear()
                try:
                    while self._answers:
                        answer = self._answers.popleft()
                        resume = await self._handle(answer, in_flight, max_records, max_bytes)
                        paused_until = max(paused_until, resume)
                except Exception:  # the outbox's file failed (a full disk): try again later
                    log.exception("outbox: handling an upload's answer failed")
                    paused_until = time.monotonic() + FILE_RETRY_S
                now = time.monotonic()
                if now < paused_until:
                    await self._sleep(paused_until - now)
                    continue
                deferred = {b for b, until in self._deferred.items() if until > now}
                excluded = set(in_flight) | deferred
                timeout = min((self._deferred[b] - now for b in deferred), default=None)
                while len(in_flight) < max_in_flight:
                    unbatched = self._outbox.unbatched
                    form = unbatched >= max_records or (form_at is not None and now >= form_at)
                    try:
                        batch = await self._outbox.next_batch(
                            excluded, max_records, max_bytes, form=form
                        )
                    except Exception:
                        log.exception("outbox: reading a batch failed")
                        paused_until = now + FILE_RETRY_S
                        break
                    if batch is None:
                        if not unbatched:
                            form_at = None
                        elif form_at is None:
                            form_at = now + self._linger_s
                        if form_at is not None and not form:
                            linger = max(0.0, form_at - now)
                            timeout = linger if timeout is None else min(timeout, linger)
                        break
                    if self._outbox.unbatched == 0:
                        form_at = None
                    in_flight[batch.batch_id] = batch.count
                    excluded.add(batch.batch_id)
                    self._outbox.sending.add(batch.batch_id)
                    upload = agent_pb2.Upload(batch_id=batch.batch_id, records=batch.records)
                    send(agent_pb2.ConnectRequest(upload=upload))
                await self._sleep(timeout)
        finally:
            self._outbox.listeners.remove(self._wake.set)
            self._outbox.sending.difference_update(in_flight)

    async def _sleep(self, seconds: float | None) -> None:
        """Until an answer or new records arrive, or `seconds` passed (None: no bound)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _settled(self, batch_id: str) -> None:
        self._outbox.sending.discard(batch_id)
        self._failures.pop(batch_id, None)
        self._deferred.pop(batch_id, None)

    async def _handle(
        self,
        message: agent_pb2.ConnectResponse,
        in_flight: dict[str, int],
        max_records: int,
        max_bytes: int,
    ) -> float:
        """Act on one answer; the monotonic time before which nothing more is sent."""
        if message.HasField("upload_ack"):
            ack = message.upload_ack
            if in_flight.pop(ack.batch_id, None) is None:
                return 0.0  # not ours (any more): nothing to do
            await self._outbox.delete(ack.batch_id)
            self._settled(ack.batch_id)
            self._attempt = 0
            self.acked += 1
            self.stored += ack.stored
            log.debug(
                "batch %s stored: %d new, %d repeats, %d rejected",
                ack.batch_id,
                ack.stored,
                ack.repeats,
                ack.rejected,
            )
            if ack.rejected:
                log.warning("batch %s: the cloud set %d records aside", ack.batch_id, ack.rejected)
            return 0.0
        failed = message.upload_failed
        batch_id = failed.batch_id
        if in_flight.pop(batch_id, None) is None:
            return 0.0
        self._outbox.sending.discard(batch_id)
        if failed.failure == Failure.UPLOAD_FAILURE_TOO_LARGE:
            pieces = await self._outbox.split(batch_id, max_records, max_bytes)
            self._settled(batch_id)
            log.info("batch %s too large (%s): split in %d", batch_id, failed.reason, len(pieces))
            return 0.0
        now = time.monotonic()
        retry_after = failed.retry_after_ms / 1000
        delay = max(retry_after, self._backoff.delay(self._attempt))
        self._attempt += 1
        if failed.failure != Failure.UPLOAD_FAILURE_BUSY:
            # This batch waits longer each time it fails, while the others go ahead once
            # the pause is over: a batch the cloud cannot store never holds the rest back.
            failures = self._failures[batch_id] = self._failures.get(batch_id, 0) + 1
            self._deferred[batch_id] = now + max(retry_after, self._backoff.bound(failures))
        log.info("upload of batch %s failed (%s): again in %.1f s", batch_id, failed.reason, delay)
        return now + delay
