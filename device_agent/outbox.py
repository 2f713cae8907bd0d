"""The agent's durable outbox: telemetry records wait here until the cloud stored them.

    outbox = Outbox.open(state_dir / "outbox.db", max_bytes=64 * 1024 * 1024)
    outbox.append([{"@t": "obd.bat", "@ts": timestamp(), "voltage": 12.6}])  # never blocks
    await outbox.flush()   # committed: survives a restart or a power cut

Record sources call `append` from the event loop; it only buffers. The buffer is committed
in groups (every `flush_interval_s`, or at once past `flush_records`), one transaction and
one disk sync for the whole group, in the outbox's own thread so that the loop never waits
for the disk. The link's uploader (`device_agent/uploader.py`) takes batches from it and
deletes each once the cloud acknowledged it. The file and its policy: `outbox_store.py`
and docs/device-link.md, "The outbox".
"""

from __future__ import annotations

import asyncio
import logging
import reprlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from device_agent.outbox_store import Batch, Dropped, OutboxStore
from device_agent.records import encode

log = logging.getLogger(__name__)

T = TypeVar("T")
#: The outbox's file under the agent's state directory.
OUTBOX_FILE = "outbox.db"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class Outbox:
    """Buffers appends, commits them in groups, and serves batches to the uploader.

    Every database operation runs, in order, on one worker thread.
    """

    def __init__(
        self,
        store: OutboxStore,
        *,
        flush_interval_s: float = 0.2,
        flush_records: int = 1000,
    ) -> None:
        self._store = store
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        self._flush_interval_s = flush_interval_s
        self._flush_records = flush_records
        self._pending: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        #: Batch ids being sent on the link now; never dropped to bound the disk.
        self.sending: set[str] = set()
        #: Called on the loop after records were committed (the uploader's wake-up).
        self.listeners: list[Callable[[], None]] = []
        #: Records refused at append (not JSON, no @t/@ts, too large); not in the file.
        self.refused = 0

    @classmethod
    def open(cls, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, **options: Any) -> Outbox:
        return cls(OutboxStore(path, max_bytes), **options)

    @property
    def unbatched(self) -> int:
        """Committed records not yet in a batch."""
        return self._store.unbatched

    @property
    def bytes(self) -> int:
        """Bytes of records and batches in the file (what the bound counts)."""
        return self._store.bytes

    @property
    def dropped_total(self) -> int:
        return self._store.dropped_total

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Buffer records for the next group commit; the number accepted.

        A record that cannot be sent is refused here (logged and counted in `refused`).
        Call it on the event loop; it never waits for the disk.
        """
        accepted = 0
        for record in records:
            body = encode(record)
            if body is None:
                self.refused += 1
                # reprlib: bounded in depth and length, whatever the record holds.
                log.warning(
                    "record refused (no @t/@ts, not JSON, or too large): %s", reprlib.repr(record)
                )
                continue
            self._pending.append(body)
            accepted += 1
        if len(self._pending) >= self._flush_records:
            self._start_flush()
        elif self._pending and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._flush_interval_s, self._start_flush)
        return accepted

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self.flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox: committing records failed", exc_info=task.exception())

    async def flush(self) -> None:
        """Commit what `append` buffered; returns once it is on disk."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if not pending:
            await self._run(lambda: None)  # waits for earlier commits, in order
            return
        sending = frozenset(self.sending)
        try:
            dropped = await self._run(lambda: self._store.append(pending, sending))
        except BaseException:
            self._pending[:0] = pending  # kept for the next try
            raise
        if dropped is not None and dropped.records:
            _log_dropped(dropped, self._store.max_bytes)
        for listener in list(self.listeners):
            listener()

    async def next_batch(
        self, exclude: Iterable[str], max_records: int, max_bytes: int, *, form: bool = True
    ) -> Batch | None:
        """The oldest stored batch not in ``exclude``, or a new one (see OutboxStore)."""
        excluded = frozenset(exclude)
        return await self._run(
            lambda: self._store.next_batch(excluded, max_records, max_bytes, form)
        )

    async def delete(self, batch_id: str) -> bool:
        """Forget a batch the cloud acknowledged."""
        return await self._run(lambda: self._store.delete(batch_id))

    async def split(self, batch_id: str, max_records: int, max_bytes: int) -> list[Batch]:
        """Replace a batch the cloud found too large by smaller ones."""
        return await self._run(lambda: self._store.split(batch_id, max_records, max_bytes))

    async def batch_count(self) -> int:
        return await self._run(self._store.batch_count)

    async def close(self) -> None:
        """Commit what is buffered, then close the file."""
        try:
            await self.flush()
        finally:
            await self._run(self._store.close)
            self._executor.shutdown(wait=True)

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)


def _log_dropped(dropped: Dropped, max_bytes: int) -> None:
    log.warning(
        "outbox full (%d bytes at most): dropped the %d oldest records (%d bytes), %d so far",
        max_bytes,
        dropped.records,
        dropped.bytes,
        dropped.total,
    )
