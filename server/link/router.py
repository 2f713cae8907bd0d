"""The one seam every call to a device crosses (docs/device-link.md, "Routing").

Callers (the resource APIs) depend on `DeviceRouter` only. `LocalRouter` serves the links
this process holds; with several replicas a NATS router will take its place (request-reply
on a subject per device, "no responders" meaning offline) without touching the callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from google.protobuf import struct_pb2

from server import errors
from server.link.link import DeviceKey, Link, Resource
from server.link.registry import LinkRegistry

#: The NotFound message for a device without a live link.
OFFLINE = "device {device!r} is not connected"


class DeviceRouter(Protocol):
    """Reaches a device wherever its link is held."""

    async def resources(self, key: DeviceKey) -> Sequence[Resource]:
        """The resources the device declared; NotFound when it is offline."""
        ...

    async def invoke(
        self, key: DeviceKey, resource: str, value: struct_pb2.Value | None, seconds: float
    ) -> struct_pb2.Value | None:
        """Run a resource and return its output (see `server.link.link.Link.invoke`).

        NotFound when the device is offline or lacks the resource.
        """
        ...


class LocalRouter:
    """A `DeviceRouter` over this process's `LinkRegistry`."""

    def __init__(self, registry: LinkRegistry) -> None:
        self._registry = registry

    def _link(self, key: DeviceKey) -> Link:
        link = self._registry.get(key)
        if link is None or link.closed is not None:
            raise errors.NotFound(OFFLINE.format(device=key.device_id))
        return link

    async def resources(self, key: DeviceKey) -> Sequence[Resource]:
        return list(self._link(key).resources.values())

    async def invoke(
        self, key: DeviceKey, resource: str, value: struct_pb2.Value | None, seconds: float
    ) -> struct_pb2.Value | None:
        return await self._link(key).invoke(resource, value, seconds)
