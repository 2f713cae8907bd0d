"""The rollup fold, run by the server: keeps per-minute and per-hour rollups current.

Writers only mark the minutes (hours) they touch; this task recomputes the quiet ones in
bounded passes (``DEFAULT_FOLD_LIMIT`` minutes each, one short transaction), pausing
between full passes so that ingest keeps its turn at SQLite's write lock. Reads are exact
whether or not it has caught up: a dirty minute is read raw (docs/telemetry-reads.md,
"Rollups").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from sqlalchemy.orm import Session

from server.storage import rollups
from server.storage.db import Database

__all__ = ["FOLD_INTERVAL_S", "fold_all", "keep_folding"]

log = logging.getLogger(__name__)

#: How often the task looks for dirty minutes once it has caught up.
FOLD_INTERVAL_S = 1.0
#: The pause after a full pass, for other writers.
_PAUSE_S = 0.02


async def _to_the_end(database: Database, fn: Callable[[Session], int]) -> int:
    """``database.run(fn)``, except that a cancellation (the server stopping) waits for the
    worker thread's call to end, which nothing can interrupt: the database is then never
    disposed under a pass that still holds a connection. A pass is bounded (``limit``)."""
    call = asyncio.ensure_future(database.run(fn))
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        await asyncio.gather(call, return_exceptions=True)
        raise


async def fold_all(
    database: Database,
    *,
    limit: int = rollups.DEFAULT_FOLD_LIMIT,
    quiet_us: int = rollups.QUIET_US,
    pause_s: float = _PAUSE_S,
) -> int:
    """Fold every quiet dirty minute and hour; the number folded (passes of ``limit``)."""
    total = 0
    for fold in (rollups.fold_records, rollups.fold_input_data):
        while True:
            done = await _to_the_end(database, partial(fold, limit=limit, quiet_us=quiet_us))
            total += done
            if done < limit:
                break
            await asyncio.sleep(pause_s)
    return total


async def keep_folding(database: Database, interval_s: float = FOLD_INTERVAL_S) -> None:
    """Fold forever, every ``interval_s``; a failed pass (the database briefly away) is
    logged and tried again, the marks it did not clear stay."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            folded = await fold_all(database)
        except Exception:
            log.exception("rollup fold failed")
        else:
            if folded:
                log.debug("folded %d dirty minutes and hours", folded)
