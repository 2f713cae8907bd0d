"""DeviceService: Thinger's Devices API v1, a user's devices and their device tokens.

Thin by design: check who is asking, call storage in one worker-thread unit of work, build
the answer. Who may do what (docs/design.md, "Device tokens"):

- the path's user must be the caller, whatever the credential (401 otherwise, whether or
  not that user exists);
- listing devices takes any of the user's credentials; a scoped user token sees only the
  devices it may read, and a device it may not see is answered like one that is absent;
- adding and deleting devices, and everything about device tokens, takes a login session
  (`require_self`, as for user tokens): these make or revoke credentials;
- device tokens are refused at the interceptor: every rpc here is ACCESS_USER.
"""

from __future__ import annotations

import grpc
from google.protobuf import struct_pb2
from sqlalchemy.orm import Session
from thingwire.devices.v1 import devices_pb2, devices_pb2_grpc

from server.auth.device_tokens import sign_stored
from server.auth.principal import Action, require_path_user, require_self, require_user
from server.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from server.link.link import DeviceKey
from server.services.convert import epoch_ms, epoch_ms_or_none, json_sent
from server.state import AppState
from server.storage import devices
from server.storage.tokens import device_tokens
from server.storage.tokens.device_tokens import ALL_RESOURCES

#: Why a link closes when its device is deleted.
DEVICE_DELETED = "the device was deleted"
#: Why a link closes when the link token it was opened with is deleted.
LINK_TOKEN_DELETED = "the link token this link was opened with was deleted"  # noqa: S105 - a message


class DeviceService(devices_pb2_grpc.DeviceServiceServicer):
    """Implements thingwire.devices.v1.DeviceService."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def ListDevices(
        self, request: devices_pb2.ListDevicesRequest, context: grpc.aio.ServicerContext
    ) -> struct_pb2.ListValue:
        principal = require_user()
        require_path_user(principal, request.user_id)
        wanted = request.id or None
        rows = await self._state.database.run(
            lambda s: devices.list_devices(s, principal.user_id, wanted)
        )
        listing = struct_pb2.ListValue()
        for device in rows:
            if not principal.allows(Action.READ, device.device_id):
                continue
            listing.add_struct().update(
                {
                    "device": device.device_id,
                    "description": device.description,
                    "connection": {
                        "active": device.connected,
                        "ts": epoch_ms(device.connected_time),
                    },
                }
            )
        return listing

    async def CreateDevice(
        self, request: devices_pb2.CreateDeviceRequest, context: grpc.aio.ServicerContext
    ) -> devices_pb2.CreateDeviceResponse:
        principal = require_user()
        require_self(principal, request.user_id)
        if not request.device_id:
            raise InvalidArgument("device_id is required")
        if not request.device_credentials:
            raise InvalidArgument("device_credentials is required")
        limit = self._state.max_devices_per_user
        try:
            await self._state.database.run(
                lambda s: devices.add_device(
                    s,
                    principal.user_id,
                    request.device_id,
                    request.device_credentials,
                    request.device_description,
                    limit,
                )
            )
        except AlreadyExists:
            # Thinger documents 400 for a device that already exists.
            raise InvalidArgument(f"device {request.device_id!r} already exists") from None
        return devices_pb2.CreateDeviceResponse()

    async def DeleteDevice(
        self, request: devices_pb2.DeleteDeviceRequest, context: grpc.aio.ServicerContext
    ) -> devices_pb2.DeleteDeviceResponse:
        principal = require_user()
        require_self(principal, request.user_id)
        device_id = request.device_id
        if await self._state.router.figures(DeviceKey(principal.user_id, device_id)):
            # Live here or on another replica, even if its row does not say so yet
            # (docs/device-link.md).
            raise devices.device_connected(device_id)
        row = await self._state.database.run(
            lambda s: devices.get_device(s, principal.user_id, device_id)
        )
        if row.connected:
            # Its link may have closed here a moment ago, its row not written yet (within
            # 0.2 s): the device is offline, so let the row say so before the check.
            try:
                await self._state.link_stats.written(row.id)
            except TimeoutError:
                raise Unavailable("the device's state could not be saved; try again") from None
        await self._state.database.run(
            lambda s: devices.delete_device(s, principal.user_id, device_id)
        )
        # A link whose Hello was checked just before the row went may have attached while
        # it was deleted: it must not go on serving a device that no longer exists (nor,
        # once the id is used again, the new device of that id).
        await self._state.router.close(DeviceKey(principal.user_id, device_id), DEVICE_DELETED)
        return devices_pb2.DeleteDeviceResponse()

    async def ListDeviceTokens(
        self, request: devices_pb2.ListDeviceTokensRequest, context: grpc.aio.ServicerContext
    ) -> struct_pb2.ListValue:
        principal = require_user()
        require_self(principal, request.user_id)
        signer, now = self._state.signer, self._state.clock()
        device_id = request.device_id

        def shown(s: Session) -> list[dict[str, str]]:
            entries = []
            for row in device_tokens.list_device_tokens(s, principal.user_id, device_id):
                token, kid = sign_stored(signer, row, principal.username, device_id, now)
                if kid != row.kid:
                    # Its key stopped verifying (a rotation's grace ended): from now on the
                    # token is the one signed with the current key.
                    device_tokens.set_token_kid(s, row.id, kid)
                entries.append({"id": row.id, "name": row.name, "token": token})
            return entries

        listing = struct_pb2.ListValue()
        for entry in await self._state.database.run(shown):
            listing.add_struct().update(entry)
        return listing

    async def CreateDeviceToken(
        self, request: devices_pb2.CreateDeviceTokenRequest, context: grpc.aio.ServicerContext
    ) -> devices_pb2.CreateDeviceTokenResponse:
        principal = require_user()
        require_self(principal, request.user_id)
        resources = json_sent(request, "token_resources", ALL_RESOURCES)
        signer, now = self._state.signer, self._state.clock()
        expire_time = epoch_ms_or_none(request.token_expiration, "token_expiration")
        device_id = request.device_id

        def create(s: Session) -> devices_pb2.CreateDeviceTokenResponse:
            # Storage checks the device, the name, the resources and that the expiry lies ahead.
            row = device_tokens.create_device_token(
                s,
                principal.user_id,
                device_id,
                request.token_name,
                resources,
                expire_time,
                now,
                signer.current_kid,
            )
            token, _kid = sign_stored(signer, row, principal.username, device_id, now)
            return devices_pb2.CreateDeviceTokenResponse(id=row.id, name=row.name, token=token)

        return await self._state.database.run(create)

    async def DeleteDeviceToken(
        self, request: devices_pb2.DeleteDeviceTokenRequest, context: grpc.aio.ServicerContext
    ) -> devices_pb2.DeleteDeviceTokenResponse:
        principal = require_user()
        require_self(principal, request.user_id)
        if not request.token_id:
            raise NotFound("token not found")
        await self._state.database.run(
            lambda s: device_tokens.delete_device_token(
                s, principal.user_id, request.device_id, request.token_id
            )
        )
        # Revoking a link token must end the link it opened (say, a leaked token's), not
        # only refuse the next Hello.
        await self._state.router.close(
            DeviceKey(principal.user_id, request.device_id), LINK_TOKEN_DELETED, request.token_id
        )
        return devices_pb2.DeleteDeviceTokenResponse()
