"""Link secrets checked in batches: the Hellos of a reconnecting fleet share their queries.

After a server restart every device comes back with its link secret within seconds. Checked
one by one, each Hello costs a worker-thread hop, a unit of work and a query; here every
Hello that arrives while a lookup runs waits for the next one, which checks them all in one
query (`link_secrets.open_many_with_link_secrets`). A lone Hello is checked at once, in a
batch of one (docs/device-link.md, "Many devices at once").
"""

from __future__ import annotations

import asyncio
from functools import partial

from server import errors
from server.storage import link_secrets
from server.storage.db import Database
from server.storage.devices import INVALID_DEVICE
from server.storage.link_secrets import LinkDevice

#: Hellos checked in one query at most (two bound parameters each).
MAX_BATCH = 500

_Waiting = tuple[str, str, str, "asyncio.Future[LinkDevice]"]


class LinkSecretChecks:
    """Checks link secrets for `AgentService`, batching those that arrive together. Used
    on the event loop's thread only."""

    def __init__(self, database: Database, max_batch: int = MAX_BATCH) -> None:
        self._database = database
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._drain: asyncio.Task[None] | None = None

    async def check(self, user: str, device: str, secret: str) -> LinkDevice:
        """The device whose link secret `secret` is; Unauthenticated otherwise."""
        answer: asyncio.Future[LinkDevice] = asyncio.get_running_loop().create_future()
        self._waiting.append((user, device, secret, answer))
        if self._drain is None:
            self._drain = asyncio.create_task(self._run())
        return await answer

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                hellos = [(user, device, secret) for user, device, secret, _ in batch]
                try:
                    found = await self._database.run(
                        partial(link_secrets.open_many_with_link_secrets, hellos=hellos)
                    )
                except asyncio.CancelledError:
                    _cancel(batch)
                    raise
                except Exception as error:  # the database failed: each Hello fails with it
                    for *_, answer in batch:
                        if not answer.done():
                            answer.set_exception(error)
                    continue
                for (*_, answer), device in zip(batch, found, strict=True):
                    if answer.done():  # its stream ended meanwhile
                        continue
                    if device is None:
                        answer.set_exception(errors.Unauthenticated(INVALID_DEVICE))
                    else:
                        answer.set_result(device)
        except asyncio.CancelledError:
            _cancel(self._waiting)
            self._waiting = []
            raise
        finally:
            self._drain = None


def _cancel(batch: list[_Waiting]) -> None:
    for *_, answer in batch:
        answer.cancel()
