"""Keeps the devices table's connection columns true: written in batches, never per message.

The columns (`connected`, `connected_time`, `ip_address`, `rx_bytes`, `tx_bytes`) are what
the Devices API shows and what survives a restart (docs/device-link.md, "Statistics"):

- a link that opens or closes is written soon (`attached`, `detached`), together with every
  other such change of that moment, in one transaction;
- a live link whose byte counts moved is only marked (`changed`, a dict assignment per
  message) and written with the next round, every `interval_s`;
- so a fleet of 10,000 chatty links costs at most 10,000 rows per interval, in one
  statement, and a quiet one nothing.

A crash loses at most the last interval's counts. Devices left `connected` by a process
that died are reset by `sweep` when the next one starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.link.link import Link, LinkFigures
from server.storage.db import Database
from server.storage.models import Device

log = logging.getLogger(__name__)

#: How long an opened or closed link waits for others to share its transaction.
COALESCE_S = 0.2


_COLUMNS = ("connected", "connected_time", "ip_address", "rx_bytes", "tx_bytes")


def _row(device_pk: int, figures: LinkFigures) -> dict[str, object]:
    return {
        "pk": device_pk,
        "v_connected": figures.connected,
        "v_connected_time": figures.connected_time,
        "v_ip_address": figures.ip_address,
        "v_rx_bytes": figures.rx_bytes,
        "v_tx_bytes": figures.tx_bytes,
    }


def _update_statement() -> sa.Update:
    table = Device.__table__
    assert isinstance(table, sa.Table)
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("pk"))
        .values({name: sa.bindparam(f"v_{name}", type_=table.c[name].type) for name in _COLUMNS})
    )


def write_figures(s: Session, rows: list[dict[str, object]]) -> None:
    """One UPDATE by primary key, executed for all `rows` at once (a deleted device's row
    simply matches nothing)."""
    if rows:
        s.execute(_update_statement(), rows)


def sweep_stale(s: Session, now: datetime) -> int:
    """Mark every device still `connected` as disconnected at `now`; returns how many.

    Only right for the one process that holds every link (the embedded default): see
    docs/device-link.md, "What survives a restart", for what replicas need instead.
    """
    result = s.execute(
        sa.update(Device)
        .where(Device.connected.is_(True))
        .values(connected=False, connected_time=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


class StatsStore:
    """The figures waiting to be written, and the task that writes them.

    Used on the event loop's thread only. Each device has at most one entry: its live link
    (figures read when written) or the final figures of its closed one.
    """

    def __init__(
        self, database: Database, interval_s: float, clock: Callable[[], datetime]
    ) -> None:
        self._database = database
        self._interval_s = interval_s
        self._clock = clock
        self._live: dict[int, Link] = {}
        self._final: dict[int, LinkFigures] = {}
        self._soon = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Rows of the write under way (0 when none is), and its closed links' figures.
        self._writing = 0
        self._final_writing: dict[int, LinkFigures] = {}
        #: Set (and replaced) after every write attempt, for `written`.
        self._flushed = asyncio.Event()

    # -- what the links report ---------------------------------------------------------

    def attached(self, link: Link) -> None:
        """A link opened: write it soon."""
        self._final.pop(link.device_pk, None)
        self._live[link.device_pk] = link
        self._soon.set()

    def changed(self, link: Link) -> None:
        """A live link's counts moved: write them with the next round."""
        if link.closed is None and link.device_pk not in self._final:
            self._live[link.device_pk] = link

    def detached(self, link: Link) -> None:
        """The device's live link closed: write its final figures soon, as closed now."""
        self._live.pop(link.device_pk, None)
        self._final[link.device_pk] = LinkFigures(
            connected=False,
            connected_time=self._clock(),
            ip_address=link.ip_address,
            rx_bytes=link.rx_bytes,
            tx_bytes=link.tx_bytes,
        )
        self._soon.set()

    def forget(self, link: Link) -> None:
        """The link moved to another replica, which writes its device's row from now on:
        nothing of this link is written any more."""
        if self._live.get(link.device_pk) is link:
            del self._live[link.device_pk]

    def unwritten(self, device_pk: int) -> LinkFigures | None:
        """The final figures of a closed link not written yet (readers prefer them)."""
        return self._final.get(device_pk) or self._final_writing.get(device_pk)

    async def written(self, device_pk: int, timeout_s: float = 5.0) -> None:
        """Until a closed link's final figures for `device_pk` are written (at once if none
        wait), so that the row says what this process knows; TimeoutError past `timeout_s`
        (the database is away)."""
        async with asyncio.timeout(timeout_s):
            while self.unwritten(device_pk) is not None:
                flushed = self._flushed
                self._soon.set()
                await flushed.wait()

    @property
    def waiting(self) -> int:
        """How many devices have figures waiting to be written, or being written."""
        return len(self._live) + len(self._final) + self._writing

    # -- writing -------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Reset devices a dead process left `connected` (at start, before any link)."""
        now = self._clock()
        count = await self._database.run(lambda s: sweep_stale(s, now))
        if count:
            log.info("marked %d devices disconnected: their links died with their process", count)
        return count

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """End the rounds and write what is left (the links have closed by now).

        The round loop is told to end rather than cancelled: a cancellation that meets
        `_soon` being set can be swallowed by the wait (Python 3.11), and the loop would
        never end.
        """
        self._stopping = True
        self._soon.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                async with asyncio.timeout(self._interval_s):
                    await self._soon.wait()
            except TimeoutError:
                pass
            else:
                if not self._stopping:
                    await asyncio.sleep(COALESCE_S)  # let the others of this moment join
            self._soon.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every waiting entry in one transaction; on failure keep them for next time."""
        live, final = self._live, self._final
        self._live, self._final = {}, {}
        rows = [_row(pk, link.figures()) for pk, link in live.items()]
        rows += [_row(pk, figures) for pk, figures in final.items()]
        if not rows:
            return
        self._writing, self._final_writing = len(rows), final
        try:
            await self._database.run(lambda s: write_figures(s, rows))
        except asyncio.CancelledError:
            self._restore(live, final)
            raise
        except Exception:  # the database may be briefly away: the next round retries
            log.exception("writing the figures of %d device links failed", len(rows))
            self._restore(live, final)
        finally:
            self._writing, self._final_writing = 0, {}
            self._flushed.set()
            self._flushed = asyncio.Event()

    def _restore(self, live: dict[int, Link], final: dict[int, LinkFigures]) -> None:
        """Put entries back unless a newer one arrived meanwhile."""
        for pk, figures in final.items():
            if pk not in self._live and pk not in self._final:
                self._final[pk] = figures
        for pk, link in live.items():
            if pk not in self._live and pk not in self._final and link.closed is None:
                self._live[pk] = link


__all__ = ["StatsStore", "sweep_stale", "write_figures"]
