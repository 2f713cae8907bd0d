"""Streams that abuse the device link: held open without a Hello, oversized declarations,
ids no device can have. The server must bound what each costs and answer every one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2
from sqlalchemy.orm import Session
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc
from thingwire.devices.v1 import devices_pb2, devices_pb2_grpc

from device_agent.agent import LinkRefused
from server import errors
from server.auth import passwords
from server.link.link import (
    MAX_INPUT_BYTES,
    MAX_OUTGOING_BACKLOG,
    NOT_READING,
    DeviceKey,
    Link,
    LinkLimits,
)
from server.services import agent_service
from server.storage import devices
from server.storage.models import Device
from tests.link.conftest import CREDENTIALS, DEVICE, USER, LinkWorld, connected, stopped

OUTPUT = agent_pb2.RESOURCE_KIND_OUTPUT


async def refusal(world: LinkWorld, hello: agent_pb2.Hello) -> grpc.aio.AioRpcError:
    """How the server ends a stream that opens with `hello`."""
    async with grpc.aio.insecure_channel(world.target) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.Connect(iter([agent_pb2.ConnectRequest(hello=hello)])):
                pass
        return info.value


def hello_with(*declarations: agent_pb2.ResourceDeclaration) -> agent_pb2.Hello:
    return agent_pb2.Hello(
        user=USER, device=DEVICE, credentials=CREDENTIALS, resources=list(declarations)
    )


def test_a_stream_that_never_says_hello_is_ended(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    world = make_world(LinkLimits(hello_timeout_s=0.5))

    async def silent() -> AsyncIterator[agent_pb2.ConnectRequest]:
        await asyncio.Event().wait()  # holds the stream open, sends nothing
        yield agent_pb2.ConnectRequest()  # pragma: no cover

    async def scenario() -> tuple[grpc.aio.AioRpcError, float]:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stub.Connect(silent(), timeout=30):
                    pass
            return info.value, time.monotonic() - started

    error, took = world.run(scenario)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() == "no Hello within 0.5 s"
    assert took < 5


def test_a_device_declares_at_most_so_many_resources(world: LinkWorld) -> None:
    many = [
        agent_pb2.ResourceDeclaration(name=f"r{i}", kind=OUTPUT)
        for i in range(agent_service.MAX_RESOURCES + 1)
    ]
    error = world.run(lambda: refusal(world, hello_with(*many)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "a device declares at most 512 resources"
    assert len(world.running.state.links) == 0


def test_a_description_past_the_limit_is_refused(world: LinkWorld) -> None:
    long = agent_pb2.ResourceDeclaration(name="x", kind=OUTPUT, description="d" * 1025)
    error = world.run(lambda: refusal(world, hello_with(long)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "resource 'x': descriptions have at most 1024 characters"


@pytest.mark.parametrize(
    "example",
    [
        struct_pb2.Value(string_value="e" * 5000),
        struct_pb2.Value(number_value=float("nan")),
        struct_pb2.Value(
            list_value=struct_pb2.ListValue(values=[struct_pb2.Value(number_value=float("inf"))])
        ),
    ],
    ids=["large", "nan", "inf"],
)
def test_an_example_must_be_small_json(world: LinkWorld, example: struct_pb2.Value) -> None:
    declaration = agent_pb2.ResourceDeclaration(name="x", kind=OUTPUT, example=example)
    error = world.run(lambda: refusal(world, hello_with(declaration)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "resource 'x': an example is JSON of at most 4096 bytes"


def test_declarations_at_the_limits_are_accepted(world: LinkWorld) -> None:
    at_limits = [
        agent_pb2.ResourceDeclaration(name=f"r{i}", kind=OUTPUT, description="d" * 1024)
        for i in range(agent_service.MAX_RESOURCES)
    ]
    at_limits[0].example.string_value = "e" * 4000

    async def scenario() -> int:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            queue: asyncio.Queue[agent_pb2.ConnectRequest] = asyncio.Queue()
            await queue.put(agent_pb2.ConnectRequest(hello=hello_with(*at_limits)))

            async def requests() -> AsyncIterator[agent_pb2.ConnectRequest]:
                while True:
                    yield await queue.get()

            call = stub.Connect(requests())
            first = await call.read()
            assert first.WhichOneof("kind") == "welcome"
            resources = await world.running.state.router.resources(world.key)
            call.cancel()
            return len(resources)

    assert world.run(scenario) == agent_service.MAX_RESOURCES


@pytest.mark.parametrize(
    ("user", "device"),
    [(USER, "boiler\x00"), ("ada\x00", DEVICE), (USER, "b" * 1000), (USER, "../boiler")],
    ids=["nul-device", "nul-user", "long-device", "traversal"],
)
@pytest.mark.parametrize("secret", ["credentials", "link_secret", "device_token"])
def test_ids_no_device_can_have_are_refused_like_wrong_credentials(
    world: LinkWorld, user: str, device: str, secret: str
) -> None:
    """PostgreSQL refuses a NUL in text: such an id must not reach SQL (an INTERNAL error)."""
    hello = agent_pb2.Hello(user=user, device=device)
    setattr(hello, secret, "whatever")
    error = world.run(lambda: refusal(world, hello))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "invalid device credentials"


def test_a_flood_of_wrong_credentials_is_turned_away_and_others_are_served(
    world: LinkWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2 for link opens runs in the password pool, admitted like a login: one client's
    flood of made-up credentials gets RESOURCE_EXHAUSTED past its share, and never stalls
    the database work of other calls (before, 200 such Hellos made a REST call wait 30 s)."""
    wrong = agent_pb2.Hello(user=USER, device=DEVICE, credentials="wrong")

    def as_slow_as_argon2(stored: str | None, password: str) -> bool:
        time.sleep(0.15)  # the real cost (tests/conftest.py makes argon2 cheap)
        return False

    for module in (passwords, devices):
        monkeypatch.setattr(module, "verify_password", as_slow_as_argon2)

    async def scenario() -> tuple[set[grpc.StatusCode], float]:
        flood = [asyncio.create_task(refusal(world, wrong)) for _ in range(60)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await world.running.state.database.run(
            lambda s: devices.get_device(s, world.key.user_id, DEVICE)
        )
        took = time.monotonic() - started
        return {error.code() for error in await asyncio.gather(*flood)}, took

    codes, took = world.run(scenario)
    assert codes == {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert took < 1.0


def test_right_credentials_still_open_the_link(world: LinkWorld) -> None:
    async def scenario() -> str:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            call = stub.Connect(iter([agent_pb2.ConnectRequest(hello=hello_with())]))
            first = await call.read()
            call.cancel()
            return str(first.welcome.link_secret)

    assert world.run(scenario)


def test_an_input_larger_than_a_device_accepts_is_refused_and_the_link_stays(
    world: LinkWorld,
) -> None:
    """An Invoke past the agent's gRPC receive limit (4 MiB by default) would end its whole
    stream: one caller's large body would drop the device and fail all its calls."""
    agent = world.agent()

    @agent.io("echo")
    def echo(value: object) -> object:
        return "ok"

    router = world.running.state.router
    large = struct_pb2.Value(string_value="x" * (5 * 1024 * 1024))
    fits = struct_pb2.Value(string_value="x" * (MAX_INPUT_BYTES - 16))

    async def scenario() -> tuple[str, bool, object]:
        task = await connected(agent)
        link = world.running.state.links.get(world.key)
        with pytest.raises(errors.InvalidArgument) as info:
            await router.invoke(world.key, "echo", large, 10)
        answer = await router.invoke(world.key, "echo", fits, 10)
        same = world.running.state.links.get(world.key) is link
        await stopped(task)
        return info.value.message, same, answer.string_value if answer else None

    message, same, answer = world.run(scenario)
    assert message == f"the input is larger than a device accepts ({MAX_INPUT_BYTES} bytes)"
    assert same
    assert answer == "ok"


def test_a_result_for_a_call_never_made_ends_the_link(world: LinkWorld) -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        never = agent_pb2.ConnectRequest(result=agent_pb2.Result(call_id=12345))
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            requests = [agent_pb2.ConnectRequest(hello=hello_with()), never]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stub.Connect(iter(requests)):
                    pass
            return info.value

    error = world.run(scenario)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "no call 12345 was made on this link"


def test_a_link_that_attaches_while_its_device_is_deleted_is_closed(
    world: LinkWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeleteDevice checks for a live link, then deletes the row: a Hello checked between the
    two attached a link for a device that no longer exists, which went on serving calls
    (and, once the id was used again, the new device of that id)."""
    links = world.running.state.links
    attached = threading.Event()
    real_delete = devices.delete_device

    def delete_once_linked(s: Session, user_id: int, device_id: str) -> None:
        assert attached.wait(10)  # the device's link attached after the check
        with world.database.session() as other:  # the row does not say so yet
            other.execute(sa.update(Device).values(connected=False))
        real_delete(s, user_id, device_id)

    monkeypatch.setattr(devices, "delete_device", delete_once_linked)

    async def scenario() -> tuple[bool, BaseException | None]:
        async with grpc.aio.insecure_channel(world.target) as channel:
            answer = await auth_pb2_grpc.AuthServiceStub(channel).Login(
                auth_pb2.LoginRequest(email="ada@example.com", password="a-long-password")
            )
            stub = devices_pb2_grpc.DeviceServiceStub(channel)
            deleting = stub.DeleteDevice(
                devices_pb2.DeleteDeviceRequest(user_id=USER, device_id=DEVICE),
                metadata=(("authorization", f"Bearer {answer.token}"),),
            )
            await asyncio.sleep(0.2)  # past the servicer's check for a live link
            task = asyncio.create_task(world.agent().serve())
            while links.get(world.key) is None:
                await links.next_change(world.key).wait()
            attached.set()
            await deleting
            link = links.get(world.key)
            done = await asyncio.wait({task}, timeout=5)
            return link is None or link.closed is not None, task.exception() if done[0] else None

    closed, agent_error = world.run(scenario)
    assert closed
    assert isinstance(agent_error, LinkRefused)
    assert agent_error.details == "the device was deleted"


def test_a_device_that_does_not_read_its_answers_has_its_link_closed_not_a_backlog() -> None:
    # Each Upload past the in-flight limit is answered at once; a device that sends them
    # without reading would make the server queue answers without bound.
    async def scenario() -> tuple[errors.ThingwireError | None, list[agent_pb2.ConnectResponse]]:
        link = Link(DeviceKey(1, "car"), {}, 4)
        busy = agent_pb2.ConnectResponse(upload_failed=agent_pb2.UploadFailed(batch_id="b"))
        for _ in range(MAX_OUTGOING_BACKLOG * 3):
            link.send(busy)
        async with asyncio.timeout(5):  # it ends: the link closed
            sent = [message async for message in link.outgoing()]
        return link.closed, sent

    closed, sent = asyncio.run(scenario())
    assert isinstance(closed, errors.Unavailable)
    assert closed.message == NOT_READING
    assert sent == []  # what it did not read is dropped, so its stream ends at once


def test_hellos_past_the_opening_limit_are_refused_at_once_and_the_slot_comes_back(
    make_world: Callable[[LinkLimits], LinkWorld], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Hello is being checked (its check held back) and fills the only opening slot: a
    second Hello is refused RESOURCE_EXHAUSTED at once, not after a wait; once the first
    check ends, its device opens and the slot serves the next one."""
    world = make_world(LinkLimits(max_links_opening=1, hello_timeout_s=5.0))
    gate = asyncio.Event()
    checking = asyncio.Event()
    real_open = agent_service.AgentService._open

    async def held_open(self: agent_service.AgentService, *args: object) -> object:
        checking.set()
        await gate.wait()
        return await real_open(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(agent_service.AgentService, "_open", held_open)

    async def scenario() -> tuple[grpc.aio.AioRpcError, float, int]:
        first = asyncio.create_task(connected(world.agent()))
        await asyncio.wait_for(checking.wait(), 10)  # the first Hello holds the slot
        started = time.monotonic()
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            call = stub.Connect(iter([agent_pb2.ConnectRequest(hello=hello_with())]))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call.read()
        took = time.monotonic() - started
        gate.set()
        await stopped(await first)
        agent = world.agent()
        await stopped(await connected(agent))
        return info.value, took, agent.connections

    error, took, connections = world.run(scenario)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == agent_service.TOO_MANY_OPENING
    assert dict(error.trailing_metadata() or ()).get("retry-after") == "1"
    assert took < 2  # refused at once, not after the Hello timeout or the check
    assert connections == 1


def test_silent_streams_hold_no_opening_slot(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    """Streams that never send a Hello, more of them than there are slots, do not keep a
    device from opening its link: only a Hello being checked holds a slot."""
    world = make_world(LinkLimits(max_links_opening=2, hello_timeout_s=5.0))

    async def silent() -> AsyncIterator[agent_pb2.ConnectRequest]:
        await asyncio.Event().wait()  # holds the stream open, sends nothing
        yield agent_pb2.ConnectRequest()  # pragma: no cover

    async def scenario() -> tuple[float, int]:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            holders = [stub.Connect(silent(), timeout=30) for _ in range(5)]
            for holder in holders:
                await holder.wait_for_connection()
            await asyncio.sleep(0.2)  # all five are in the servicer, waiting for a Hello
            started = time.monotonic()
            agent = world.agent()
            await stopped(await connected(agent))
            took = time.monotonic() - started
            for holder in holders:
                holder.cancel()
        return took, agent.connections

    took, connections = world.run(scenario)
    assert took < 2.5  # at its first attempt, not after the silent streams' Hello timeout
    assert connections == 1


def test_a_closed_link_keeps_its_reason_without_the_traceback() -> None:
    """The reason's traceback would reference the frames that hold the link: a cycle that
    keeps every closed link alive until a full collection."""
    link = Link(DeviceKey(1, "d"), {}, 4)
    with pytest.raises(errors.InvalidArgument) as raised:
        raise errors.InvalidArgument("no call 9 was made on this link")
    assert raised.value.__traceback__ is not None
    link.close(raised.value)
    assert isinstance(link.closed, errors.InvalidArgument)
    assert link.closed.message == "no call 9 was made on this link"
    assert link.closed.__traceback__ is None
    throttled = Link(DeviceKey(1, "e"), {}, 4)
    throttled.close(errors.Throttled("busy", 3))  # a subclass with its own constructor
    assert isinstance(throttled.closed, errors.Throttled)
    assert throttled.closed.retry_after == 3
