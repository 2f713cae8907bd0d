"""This process's live links, one per device; owned by `server.state.AppState`, never global.

A second connection of the same device replaces the first: the old link closes at once
(its calls fail, its stream ends with FAILED_PRECONDITION), so a device is never served twice.
"""

from __future__ import annotations

from server import errors
from server.link.link import DeviceKey, Link

#: Why a link closed because the same device connected again.
REPLACED = "replaced by a newer connection of the same device"


class LinkRegistry:
    """Live links by device. Used on the event loop's thread only, so it needs no lock."""

    def __init__(self) -> None:
        self._links: dict[DeviceKey, Link] = {}

    def attach(self, link: Link) -> None:
        """Make `link` its device's live link, closing the one it replaces."""
        old = self._links.get(link.key)
        self._links[link.key] = link
        if old is not None:
            old.close(errors.FailedPrecondition(REPLACED))

    def detach(self, link: Link) -> None:
        """Forget `link`, unless a newer link of its device has replaced it already."""
        if self._links.get(link.key) is link:
            del self._links[link.key]

    def get(self, key: DeviceKey) -> Link | None:
        """The device's live link here, or None."""
        return self._links.get(key)

    def __len__(self) -> int:
        return len(self._links)
