"""`NatsRouter`: a `DeviceRouter` for replicas (docs/device-link.md, "Routing").

A device whose stream this replica holds is called directly, with no NATS hop. Any other is
asked on its subject (`server/link/nats_wire.py`): the replica holding it answers, and NATS's
"no responders" means no replica does, so the device is offline: the same NotFound a single
process gives. The holder applies the link's own rules (resource, input, in-flight limit,
deadline), so 404, 400, 429 and 504 mean the same wherever the device is. The caller waits
a little past the call's deadline for the holder's answer, so that the holder's
DeadlineExceeded (504) arrives rather than a timeout of the request; a caller that goes
away tells the holder, which cancels the call on the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence

import nats.errors
from google.protobuf import struct_pb2
from nats.aio.msg import Msg
from thingwire.agent.v1 import agent_pb2

from server import errors
from server.link import nats_wire as wire
from server.link.link import DeviceKey, LinkFigures, Resource
from server.link.nats_links import BROKER_DOWN, FIGURES_TIMEOUT_S, NatsLinks
from server.link.router import OFFLINE, LocalRouter

log = logging.getLogger(__name__)

#: How much longer than the call's deadline the caller waits for the holder's answer.
TRANSIT_MARGIN_S = 1.0
#: Resource listings are answered from the holder's memory.
READ_TIMEOUT_S = 5.0
#: What a caller is told when the holder never answered (it died mid-call, say).
NO_ANSWER = "device {device!r} did not answer in time"


class NatsRouter:
    """Local links directly; every other device over NATS request-reply."""

    def __init__(self, links: NatsLinks) -> None:
        self._links = links
        self._local = LocalRouter(links)

    def _held_here(self, key: DeviceKey) -> bool:
        link = self._links.get(key)
        return link is not None and link.closed is None

    async def _request(
        self, key: DeviceKey, headers: dict[str, str], data: bytes, wait_s: float
    ) -> Msg:
        """Ask the device's holder; NotFound when none answers, Unavailable without NATS,
        DeadlineExceeded when the holder stays silent past `wait_s`."""
        if not wire.routable(key):  # no device has this id: offline, whoever asks
            raise errors.NotFound(OFFLINE.format(device=key.device_id))
        nc = self._links.nc
        try:
            answer = await nc.request(
                wire.device_subject(key), data, timeout=wait_s, headers=headers
            )
        except nats.errors.NoRespondersError:
            raise errors.NotFound(OFFLINE.format(device=key.device_id)) from None
        except nats.errors.TimeoutError:
            if not nc.is_connected:
                raise errors.Unavailable(BROKER_DOWN) from None
            raise errors.DeadlineExceeded(NO_ANSWER.format(device=key.device_id)) from None
        except nats.errors.MaxPayloadError:
            message = wire.TOO_LARGE.format(what="call", size=len(data), limit=nc.max_payload)
            raise errors.PayloadTooLarge(message) from None
        except nats.errors.Error:
            raise errors.Unavailable(BROKER_DOWN) from None
        wire.raise_if_error(answer.headers)
        return answer

    async def resources(self, key: DeviceKey) -> Sequence[Resource]:
        if self._held_here(key):
            return await self._local.resources(key)
        answer = await self._request(key, {"Op": wire.OP_RESOURCES}, b"", READ_TIMEOUT_S)
        return wire.decode_resources(answer.data)

    async def invoke(
        self, key: DeviceKey, resource: str, value: struct_pb2.Value | None, seconds: float
    ) -> struct_pb2.Value | None:
        if self._held_here(key):
            return await self._local.invoke(key, resource, value, seconds)
        data, present = wire.encode_value(value)
        call = secrets.token_hex(8)
        headers = {
            "Op": wire.OP_INVOKE,
            "Resource": wire.encode_name(resource),
            "Deadline-Ms": str(max(1, int(seconds * 1000))),
            "Value": present,
            "Call": call,
        }
        answer = await self._call(key, headers, data, seconds)
        return wire.decode_value(answer.data, (answer.headers or {}).get("Value"))

    async def command(self, key: DeviceKey, command: agent_pb2.Command, seconds: float) -> bytes:
        if self._held_here(key):
            return await self._local.command(key, command, seconds)
        headers = {
            "Op": wire.OP_COMMAND,
            "Deadline-Ms": str(max(1, int(seconds * 1000))),
            "Call": secrets.token_hex(8),
        }
        answer = await self._call(key, headers, wire.encode_command(command), seconds)
        return bytes(answer.data)

    async def _call(
        self, key: DeviceKey, headers: dict[str, str], data: bytes, seconds: float
    ) -> Msg:
        """A call with a deadline to the device's holder (headers carry `Call`): waited for
        a little past `seconds`; a caller that goes away tells the holder, which cancels
        the call on the device."""
        try:
            return await self._request(key, headers, data, seconds + TRANSIT_MARGIN_S)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._links.nc.publish(
                    wire.device_subject(key),
                    b"",
                    headers={"Op": wire.OP_CANCEL, "Call": headers["Call"]},
                )
            raise

    async def figures(self, key: DeviceKey) -> LinkFigures | None:
        if self._held_here(key):
            return await self._local.figures(key)
        try:
            answer = await self._request(key, {"Op": wire.OP_FIGURES}, b"", FIGURES_TIMEOUT_S)
        except errors.NotFound:
            return None
        return wire.decode_figures(answer.data)

    async def close(self, key: DeviceKey, reason: str, link_token_id: str | None = None) -> None:
        await self._local.close(key, reason, link_token_id)
        if not wire.routable(key):
            return
        headers = {"Op": wire.OP_CLOSE, "Reason": reason}
        if link_token_id is not None:
            headers["Token"] = link_token_id
        try:
            await self._links.nc.publish(wire.device_subject(key), b"", headers=headers)
        except (errors.Unavailable, nats.errors.Error):
            # What was deleted stays deleted: a link elsewhere ends when its device next
            # opens one, its Hello refused (docs/device-link.md, "Not yet").
            log.warning("could not tell the other replicas to close %s: NATS is away", key)

    @contextlib.asynccontextmanager
    async def watching(self, key: DeviceKey) -> AsyncIterator[None]:
        async with self._links.watching(key):
            yield

    async def held_anywhere(self, key: DeviceKey) -> bool:
        """Whether some replica holds the device's link (the start-up sweep asks)."""
        return await self.figures(key) is not None
