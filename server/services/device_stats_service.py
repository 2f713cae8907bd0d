"""Thinger's "Get Device Stats", as JSON and as Server-Sent Events (docs/device-link.md).

The figures come from the device's live link wherever it is held (the router asks the
replica that holds it), else from the
final figures of a link that closed and are not written yet, else from the devices table
(`server/link/stats_store.py`). The event stream waits on the link registry's change
events, so it reads the database only when something changed, never on a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from sqlalchemy.orm import Session
from thingwire.devices.v1 import stats_pb2
from thingwire.options.v1 import options_pb2

from server.auth.authenticator import Authenticator
from server.auth.principal import (
    Action,
    UserPrincipal,
    require_device_access,
    require_path_user,
    require_user,
)
from server.errors import Unauthenticated
from server.link.link import DeviceKey, LinkFigures
from server.request_origin import metadata_of
from server.services.convert import epoch_ms
from server.state import AppState
from server.storage.devices import get_device, validate_device_id

#: At most this many frames a second per stream: a busy link changes with every message,
#: and a watcher wants the figures, not one frame per message.
MIN_FRAME_INTERVAL_S = 0.25

StatsResponse = stats_pb2.GetDeviceStatsResponse | stats_pb2.StreamDeviceStatsResponse


def authorize(
    user_id: str, device_id: str, principal: UserPrincipal | None = None
) -> UserPrincipal:
    """The caller (or `principal`), if it may read `device_id` of the path's user.

    Unauthenticated for a path naming another user and for a credential that may not read
    the device (the same whether or not it exists); InvalidArgument for a bad device id.
    """
    principal = principal or require_user()
    # Another user's path is 401 before a bad id is 400, so paths reveal nothing.
    require_path_user(principal, user_id)
    validate_device_id(device_id)
    require_device_access(principal, user_id, Action.READ, device_id)
    return principal


def _stored(s: Session, user_id: int, device_id: str) -> tuple[int, LinkFigures]:
    """The device's row and its stored figures; NotFound for an unknown device."""
    device = get_device(s, user_id, device_id)
    return device.id, LinkFigures(
        connected=device.connected,
        connected_time=device.connected_time,
        ip_address=device.ip_address or "",
        rx_bytes=device.rx_bytes,
        tx_bytes=device.tx_bytes,
    )


def fill(response: StatsResponse, figures: LinkFigures) -> StatsResponse:
    """Copy `figures` into a response of either rpc (their fields are the same)."""
    response.connected = figures.connected
    response.connected_ts = float(epoch_ms(figures.connected_time))
    response.ip_address = figures.ip_address
    response.rx_bytes = float(figures.rx_bytes)
    response.tx_bytes = float(figures.tx_bytes)
    return response


class DeviceFigures:
    """Reads one device's figures from wherever the freshest are."""

    def __init__(self, state: AppState, principal: UserPrincipal, device_id: str) -> None:
        self._state = state
        self._user_id = principal.user_id
        self._device_id = device_id
        self.key = DeviceKey(principal.user_id, device_id)

    async def read(self) -> LinkFigures:
        live = await self._state.router.figures(self.key)  # wherever the link is held
        if live is not None:
            return live
        # The row answers NotFound for an unknown device, so it is read even when a closed
        # link's unwritten figures are about to replace it.
        pk, stored = await self._state.database.run(
            lambda s: _stored(s, self._user_id, self._device_id)
        )
        return self._state.link_stats.unwritten(pk) or stored


class DeviceStatsService:
    """Servicer of `thingwire.devices.v1.DeviceStatsService`."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def GetDeviceStats(
        self, request: stats_pb2.GetDeviceStatsRequest, context: grpc.aio.ServicerContext
    ) -> stats_pb2.GetDeviceStatsResponse:
        principal = authorize(request.user_id, request.device_id)
        figures = await DeviceFigures(self._state, principal, request.device_id).read()
        response = fill(stats_pb2.GetDeviceStatsResponse(), figures)
        assert isinstance(response, stats_pb2.GetDeviceStatsResponse)
        return response


class DeviceStatsStreamService:
    """Servicer of `thingwire.devices.v1.DeviceStatsStreamService`.

    A change wakes a stream whichever replica holds the device's link: the router's
    `watching` has the holder tell this process (docs/device-link.md, "Statistics").
    """

    def __init__(self, state: AppState) -> None:
        self._state = state
        self._authenticator = Authenticator(state.database, state.signer, state.clock)

    async def _still_allowed(
        self, request: stats_pb2.StreamDeviceStatsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        """Check the stream's credentials again: a stream lasts for hours, and a token that
        was deleted, expired or revoked meanwhile must stop it, as it stops every call."""
        principal = await self._authenticator.authenticate(
            metadata_of(context), options_pb2.ACCESS_USER_OR_DEVICE_TOKEN
        )
        if not isinstance(principal, UserPrincipal):
            raise Unauthenticated("invalid token")
        authorize(request.user_id, request.device_id, principal)

    async def StreamDeviceStats(
        self, request: stats_pb2.StreamDeviceStatsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[stats_pb2.StreamDeviceStatsResponse]:
        principal = authorize(request.user_id, request.device_id)
        device = DeviceFigures(self._state, principal, request.device_id)
        links = self._state.links
        last: LinkFigures | None = None
        async with self._state.router.watching(device.key):
            while not links.closing:
                change = links.next_change(device.key)  # before reading: no change is missed
                figures = await device.read()
                if figures != last and last is not None:
                    await self._still_allowed(request, context)
                if figures != last:
                    last = figures
                    response = fill(stats_pb2.StreamDeviceStatsResponse(), figures)
                    assert isinstance(response, stats_pb2.StreamDeviceStatsResponse)
                    yield response
                await change.wait()
                await asyncio.sleep(MIN_FRAME_INTERVAL_S)


__all__ = ["DeviceStatsService", "DeviceStatsStreamService", "authorize"]
