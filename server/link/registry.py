"""This process's live links, one per device; owned by `server.state.AppState`, never global.

A second connection of the same device replaces the first: the old link closes at once
(its calls fail, its stream ends with FAILED_PRECONDITION), so a device is never served twice.

The registry also tells watchers (the stats event stream) when a device's figures change:
`next_change` hands out an event that `notify` (and attaching or detaching a link) sets. A
watcher takes the event before it reads the figures, so no change falls between the two.
"""

from __future__ import annotations

import asyncio
import random

from server import errors
from server.link.link import DeviceKey, Link

#: Why a link closed because the same device connected again.
REPLACED = "replaced by a newer connection of the same device"
#: What devices are told when the server shuts down gracefully.
SHUTTING_DOWN = "the server is shutting down"


class LinkRegistry:
    """Live links by device. Used on the event loop's thread only, so it needs no lock."""

    def __init__(self) -> None:
        self._links: dict[DeviceKey, Link] = {}
        self._changes: dict[DeviceKey, asyncio.Event] = {}
        #: Set once the server is stopping: watchers end their streams.
        self.closing = False

    def attach(self, link: Link) -> None:
        """Make `link` its device's live link, closing the one it replaces."""
        old = self._links.get(link.key)
        self._links[link.key] = link
        if old is not None:
            old.close(errors.FailedPrecondition(REPLACED))
        self.notify(link.key)

    async def published(self, link: Link) -> None:
        """Until every process that routes calls can reach `link` (the agent service waits
        for it before the Welcome). At once here; a replica's registry waits until its
        subject is subscribed (`server/link/nats_links.py`)."""

    def detach(self, link: Link) -> bool:
        """Forget `link`, unless a newer link of its device has replaced it already; True if
        it was the device's live link."""
        if self._links.get(link.key) is not link:
            return False
        del self._links[link.key]
        self.notify(link.key)
        return True

    def next_change(self, key: DeviceKey) -> asyncio.Event:
        """An event set at the device's next change (or when the server stops)."""
        if self.closing:
            done = asyncio.Event()
            done.set()
            return done
        return self._changes.setdefault(key, asyncio.Event())

    def notify(self, key: DeviceKey) -> None:
        """Wake whoever waits for a change of this device (cheap when nobody does)."""
        waiting = self._changes.pop(key, None)
        if waiting is not None:
            waiting.set()

    def close_watchers(self) -> None:
        """Wake every watcher for the last time: the server is stopping."""
        self.closing = True
        for waiting in self._changes.values():
            waiting.set()
        self._changes.clear()

    def get(self, key: DeviceKey) -> Link | None:
        """The device's live link here, or None."""
        return self._links.get(key)

    def go_away_all(self, window_s: float, rng: random.Random | None = None) -> list[int]:
        """Send every device away, each told to come back after its own random delay within
        `window_s` (spread uniformly, so a fleet does not reconnect in one burst); returns
        the delays in ms."""
        rng = rng or random.Random()  # noqa: S311 - spreading reconnects, not a secret
        delays = []
        for link in list(self._links.values()):
            delay_ms = int(rng.uniform(0, window_s) * 1000)
            link.go_away(delay_ms, SHUTTING_DOWN)
            delays.append(delay_ms)
        return delays

    def __len__(self) -> int:
        return len(self._links)
