"""The one seam every call to a device crosses (docs/device-link.md, "Routing").

Callers (the resource APIs, the stats and device services) depend on `DeviceRouter` only.
`LocalRouter` serves the links this process holds; with replicas (`THINGWIRE_NATS_URL`)
`server.link.nats_router.NatsRouter` takes its place: request-reply on a subject per device,
"no responders" meaning offline, without touching the callers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from google.protobuf import struct_pb2
from thingwire.agent.v1 import agent_pb2

from server import errors
from server.link.link import DeviceKey, Link, LinkFigures, Resource
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

    async def command(self, key: DeviceKey, command: agent_pb2.Command, seconds: float) -> bytes:
        """Run a salt-style command and return its JSON result (see
        `server.link.link.Link.command`). NotFound when the device is offline."""
        ...

    async def figures(self, key: DeviceKey) -> LinkFigures | None:
        """The figures of the device's live link wherever it is held; None when offline."""
        ...

    async def close(self, key: DeviceKey, reason: str, link_token_id: str | None = None) -> None:
        """Close the device's live link wherever it is (only the one opened with
        `link_token_id`, when given): the device was deleted, or its token."""
        ...

    def watching(self, key: DeviceKey) -> contextlib.AbstractAsyncContextManager[None]:
        """While an event stream watches the device: its changes wake `next_change` here,
        whichever process holds its link."""
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

    async def command(self, key: DeviceKey, command: agent_pb2.Command, seconds: float) -> bytes:
        return await self._link(key).command(command, seconds)

    async def figures(self, key: DeviceKey) -> LinkFigures | None:
        link = self._registry.get(key)
        return link.figures() if link is not None and link.closed is None else None

    async def close(self, key: DeviceKey, reason: str, link_token_id: str | None = None) -> None:
        link = self._registry.get(key)
        if link is not None and (link_token_id is None or link.link_token_id == link_token_id):
            link.close(errors.FailedPrecondition(reason))

    @contextlib.asynccontextmanager
    async def watching(self, key: DeviceKey) -> AsyncIterator[None]:
        yield  # every change of a local link already wakes the registry's watchers
