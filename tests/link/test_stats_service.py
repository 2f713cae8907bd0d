"""DeviceStatsService and its event stream over gRPC, on a real in-process server."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc
from thingwire.devices.v1 import stats_pb2, stats_pb2_grpc

from server import errors
from server.app import create_server
from server.auth.device_tokens import sign_stored
from server.auth.principal import Action, Permission, UserPrincipal, current_principal
from server.security.keys import KeyRing
from server.services.device_stats_service import authorize
from server.storage.tokens import device_tokens
from tests.link.conftest import DEVICE, USER, LinkWorld, connected, stopped

PASSWORD = "a-long-password"  # the world's user (tests/link/conftest.py)


async def login(channel: grpc.aio.Channel) -> tuple[tuple[str, str], ...]:
    answer = await auth_pb2_grpc.AuthServiceStub(channel).Login(
        auth_pb2.LoginRequest(email="ada@example.com", password=PASSWORD)
    )
    return (("authorization", f"Bearer {answer.token}"),)


def test_stats_of_a_device_that_never_connected_are_zero(world: LinkWorld) -> None:
    async def scenario() -> stats_pb2.GetDeviceStatsResponse:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = stats_pb2_grpc.DeviceStatsServiceStub(channel)
            request = stats_pb2.GetDeviceStatsRequest(user_id=USER, device_id=DEVICE)
            return await stub.GetDeviceStats(request, metadata=await login(channel))

    answer = world.run(scenario)
    assert answer == stats_pb2.GetDeviceStatsResponse()


def test_stats_of_a_connected_device_come_from_its_link(world: LinkWorld) -> None:
    async def scenario() -> tuple[stats_pb2.GetDeviceStatsResponse, int, int, float]:
        task = await connected(world.agent())
        link = world.running.state.links.get(world.key)
        assert link is not None
        try:
            async with grpc.aio.insecure_channel(world.target) as channel:
                stub = stats_pb2_grpc.DeviceStatsServiceStub(channel)
                request = stats_pb2.GetDeviceStatsRequest(user_id=USER, device_id=DEVICE)
                answer = await stub.GetDeviceStats(request, metadata=await login(channel))
        finally:
            await stopped(task)
        return answer, link.rx_bytes, link.tx_bytes, link.connected_time.timestamp()

    answer, rx, tx, opened = world.run(scenario)
    assert answer.connected
    assert answer.connected_ts == int(opened * 1000)
    assert answer.ip_address == "127.0.0.1"
    assert (answer.rx_bytes, answer.tx_bytes) == (rx, tx)
    assert rx > 0
    assert tx > 0


@pytest.mark.parametrize(
    ("user", "device", "code"),
    [
        ("someone_else", DEVICE, grpc.StatusCode.UNAUTHENTICATED),
        (USER, "no_such_device", grpc.StatusCode.NOT_FOUND),
        (USER, "not-a-device-id", grpc.StatusCode.INVALID_ARGUMENT),
        (USER, "x" * 26, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_stats_refusals(world: LinkWorld, user: str, device: str, code: grpc.StatusCode) -> None:
    async def scenario() -> tuple[grpc.StatusCode, grpc.StatusCode]:
        async with grpc.aio.insecure_channel(world.target) as channel:
            metadata = await login(channel)
            unary = stats_pb2_grpc.DeviceStatsServiceStub(channel)
            streaming = stats_pb2_grpc.DeviceStatsStreamServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as plain:
                await unary.GetDeviceStats(
                    stats_pb2.GetDeviceStatsRequest(user_id=user, device_id=device),
                    metadata=metadata,
                )
            call = streaming.StreamDeviceStats(
                stats_pb2.StreamDeviceStatsRequest(user_id=user, device_id=device),
                metadata=metadata,
            )
            with pytest.raises(grpc.aio.AioRpcError) as stream:
                await call.read()
            return plain.value.code(), stream.value.code()

    assert world.run(scenario) == (code, code)


def test_stats_need_credentials(world: LinkWorld) -> None:
    async def scenario() -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = stats_pb2_grpc.DeviceStatsServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetDeviceStats(
                    stats_pb2.GetDeviceStatsRequest(user_id=USER, device_id=DEVICE)
                )
            return info.value.code()

    assert world.run(scenario) == grpc.StatusCode.UNAUTHENTICATED


def test_a_token_scoped_to_another_device_is_refused_whether_or_not_it_exists() -> None:
    scoped = UserPrincipal(
        user_id=1,
        username=USER,
        permissions=(Permission(device="other", actions=frozenset({Action.READ})),),
        credential="device_token",
    )
    token = current_principal.set(scoped)
    try:
        assert authorize(USER, "other") is scoped
        refusals = []
        for device in (DEVICE, "does_not_exist"):
            with pytest.raises(errors.Unauthenticated) as info:
                authorize(USER, device)
            refusals.append(type(info.value))
        assert refusals == [errors.Unauthenticated, errors.Unauthenticated]
        calling_only = UserPrincipal(
            1, USER, (Permission(device="*", actions=frozenset({Action.CALL})),)
        )
        current_principal.set(calling_only)
        with pytest.raises(errors.Unauthenticated):
            authorize(USER, DEVICE)
    finally:
        current_principal.reset(token)


def test_the_stream_sends_a_frame_at_once_and_one_per_change(world: LinkWorld) -> None:
    async def scenario() -> list[stats_pb2.StreamDeviceStatsResponse]:
        frames: list[stats_pb2.StreamDeviceStatsResponse] = []
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = stats_pb2_grpc.DeviceStatsStreamServiceStub(channel)
            call = stub.StreamDeviceStats(
                stats_pb2.StreamDeviceStatsRequest(user_id=USER, device_id=DEVICE),
                metadata=await login(channel),
            )

            async def next_frame() -> stats_pb2.StreamDeviceStatsResponse:
                frame = await asyncio.wait_for(call.read(), 5)
                assert isinstance(frame, stats_pb2.StreamDeviceStatsResponse)
                frames.append(frame)
                return frame

            await next_frame()  # at once: the device is offline
            task = await connected(world.agent())
            while not (await next_frame()).connected:
                pass
            await stopped(task)
            while (await next_frame()).connected:
                pass
            call.cancel()
        return frames

    frames = world.run(scenario)
    assert not frames[0].connected
    assert frames[0].connected_ts == 0
    online = next(frame for frame in frames if frame.connected)
    assert online.ip_address == "127.0.0.1"
    assert online.rx_bytes > 0
    offline = frames[-1]
    assert not offline.connected
    assert offline.connected_ts >= online.connected_ts
    assert offline.rx_bytes >= online.rx_bytes


def test_the_stream_ends_with_ok_when_the_server_stops(world: LinkWorld) -> None:
    async def scenario() -> tuple[grpc.StatusCode, float]:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = stats_pb2_grpc.DeviceStatsStreamServiceStub(channel)
            call = stub.StreamDeviceStats(
                stats_pb2.StreamDeviceStatsRequest(user_id=USER, device_id=DEVICE),
                metadata=await login(channel),
            )
            await asyncio.wait_for(call.read(), 5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            stopping = asyncio.create_task(world.running.stop(5))
            assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF
            took = loop.time() - started
            await stopping
            world.running = await create_server(
                world.database, keys=KeyRing.generate(), link_limits=world.limits
            )
            return await call.code(), took

    code, took = world.run(scenario)
    assert code == grpc.StatusCode.OK
    assert took < 3


def test_the_stream_ends_once_its_device_token_is_deleted(world: LinkWorld) -> None:
    """A stream lasts for hours: a revoked credential must stop it, not only new calls."""
    state = world.running.state

    def create_token() -> tuple[str, str]:
        with world.database.session() as s:
            row = device_tokens.create_device_token(
                s,
                world.key.user_id,
                DEVICE,
                "watch",
                None,
                None,
                state.clock(),
                state.signer.current_kid,
            )
            token, _kid = sign_stored(state.signer, row, USER, DEVICE, state.clock())
            return row.id, token

    token_id, token = create_token()

    async def scenario() -> tuple[list[stats_pb2.StreamDeviceStatsResponse], grpc.StatusCode, str]:
        frames: list[stats_pb2.StreamDeviceStatsResponse] = []
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = stats_pb2_grpc.DeviceStatsStreamServiceStub(channel)
            call = stub.StreamDeviceStats(
                stats_pb2.StreamDeviceStatsRequest(user_id=USER, device_id=DEVICE),
                metadata=(("authorization", f"Bearer {token}"),),
            )
            frames.append(await asyncio.wait_for(call.read(), 5))
            with world.database.session() as s:
                device_tokens.delete_device_token(s, world.key.user_id, DEVICE, token_id)
            task = await connected(world.agent())  # a change: the stream would show it
            try:
                while (frame := await asyncio.wait_for(call.read(), 5)) is not grpc.aio.EOF:
                    frames.append(frame)
            except grpc.aio.AioRpcError:
                pass
            await stopped(task)
            return frames, await call.code(), await call.details()

    frames, code, details = world.run(scenario)
    assert [frame.connected for frame in frames] == [False]
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details == "invalid token"
