"""Run one unit of work from several threads and two engines at once, as replicas would."""

from __future__ import annotations

import threading
from collections.abc import Callable

from server.storage.db import Database


def race(database: Database, work: Callable[[Database], None], contenders: int = 4) -> None:
    """Start `contenders` threads together, alternating between `database` and a replica."""
    replica = Database(database.url)
    barrier = threading.Barrier(contenders)

    def contend(db: Database) -> None:
        barrier.wait()
        work(db)

    try:
        engines = [database, replica] * (contenders // 2 + 1)
        threads = [threading.Thread(target=contend, args=(db,)) for db in engines[:contenders]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        replica.dispose()
