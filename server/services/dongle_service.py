"""DongleCommandService: the Local API's `execute/` and `execute_raw/` relayed from the cloud
to a device over its link (docs/device-link.md, "Commands").

Thin by design: read the body (`server/services/dongle_bodies.py`), find the caller's device
by its unit id, and hand the command to `AppState.router`, the one seam every call to a
device crosses, with the deadline of resource calls. The link raises the domain errors of a
failed call (offline, throttled, deadline, the device's own failure).
"""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2
from thingwire.agent.v1 import agent_pb2
from thingwire.devices.v1 import dongle_pb2, dongle_pb2_grpc

from server.auth.principal import Action, UserPrincipal, require_user
from server.errors import NotFound
from server.link.link import DeviceKey
from server.services.dongle_bodies import parse_execute, parse_execute_raw
from server.services.resources_service import call_deadline
from server.state import AppState
from server.storage import devices

__all__ = ["DEVICE_NOT_FOUND", "JSON", "DongleCommandService"]

#: One message for every unit id the caller may not use, whether or not it exists (DRF's
#: own text for a 404), so that the answer reveals nothing.
DEVICE_NOT_FOUND = "Not found."
#: The content type of every answer: the command's result is one JSON value.
JSON = "application/json"


class DongleCommandService(dongle_pb2_grpc.DongleCommandServiceServicer):
    """Implements thingwire.devices.v1.DongleCommandService."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def ExecuteCommand(
        self, request: dongle_pb2.ExecuteCommandRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        principal = require_user()
        command = parse_execute(request.body.data)
        return await self._run(principal, request.unit_id, command, context)

    async def ExecuteRawCommand(
        self, request: dongle_pb2.ExecuteRawCommandRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        principal = require_user()
        command = parse_execute_raw(request.body.data)
        return await self._run(principal, request.unit_id, command, context)

    async def _run(
        self,
        principal: UserPrincipal,
        unit_id: str,
        command: agent_pb2.Command,
        context: grpc.aio.ServicerContext,
    ) -> httpbody_pb2.HttpBody:
        """Run `command` on the caller's device `unit_id` and answer its JSON result.

        NotFound, with one message, for a unit id that is not the caller's, that no device
        has, or whose device the credential may not call; a caller that goes away cancels
        the command on the device.
        """
        key = await self._device(principal, unit_id)
        seconds = call_deadline(self._state.link_limits.call_timeout_s, context)
        result = await self._state.router.command(key, command, seconds)
        return httpbody_pb2.HttpBody(content_type=JSON, data=result)

    async def _device(self, principal: UserPrincipal, unit_id: str) -> DeviceKey:
        device = await self._state.database.run(
            lambda s: devices.find_by_unit_id(s, principal.user_id, unit_id)
        )
        if device is None or not principal.allows(Action.CALL, device.device_id):
            raise NotFound(DEVICE_NOT_FOUND)
        return DeviceKey(principal.user_id, device.device_id)
