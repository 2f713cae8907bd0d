"""DongleCommandService in-process: the cloud's `execute/` and `execute_raw/` through a real
server to real agents given a fake `CommandRunner`, and to hand-driven device streams (to see
exactly what the device is sent and what the server makes of odd answers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import orjson
import pytest
from google.api import httpbody_pb2
from thingwire.agent.v1 import agent_pb2
from thingwire.devices.v1 import dongle_pb2, dongle_pb2_grpc

from device_agent.agent import Agent
from device_agent.command_calls import NO_COMMANDS
from device_agent.commands import CommandError, CommandTimeout, CommandUnavailable
from server import errors
from server.link.link import MAX_INPUT_BYTES, WRONG_ANSWER, LinkLimits
from server.rest_errors import ERROR_BODY_KEY, HTTP_STATUS_KEY
from server.services.dongle_service import DEVICE_NOT_FOUND
from server.storage import devices, users
from server.storage.tokens import api_tokens
from tests.link.conftest import DEVICE, USER, LinkWorld, connected, stopped
from tests.link.test_link import GENEROUS_S
from tests.link.test_resources_service import (
    RawDevice,
    login,
    output_resource,
    refused,
    scoped,
)

Metadata = tuple[tuple[str, str], ...]


class FakeRunner:
    """A `CommandRunner` whose commands are the cases under test.

    `test.echo` gives its arguments back; `test.true` and `test.string` give bare JSON
    values; `test.fail`, `test.busy`, `test.slow` raise the three CommandErrors;
    `test.crash` raises what no runner should; `test.object` gives what JSON cannot carry;
    `test.hold` waits until cancelled. A raw line comes back as `{"line": ...}`.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Sequence[Any], Mapping[str, Any]]] = []
        self.held = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def execute(self, command: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        self.calls.append((command, args, kwargs))
        if command == "test.echo":
            return {"args": list(args), "kwargs": dict(kwargs)}
        if command == "test.true":
            return True
        if command == "test.string":
            return "total 0\n"
        if command == "test.fail":
            raise CommandError("'test.fail' is not available")
        if command == "test.busy":
            raise CommandUnavailable("the grains file cannot be written")
        if command == "test.slow":
            raise CommandTimeout("cmd.run timed out after 1 s")
        if command == "test.crash":
            raise RuntimeError("boom")
        if command == "test.object":
            return object()
        if command == "test.hold":
            self.held.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        raise CommandError(f"{command!r} is not available")

    async def execute_raw(self, line: str) -> Any:
        self.calls.append(("raw", [line], {}))
        return {"line": line}


def body(value: object) -> httpbody_pb2.HttpBody:
    data = value if isinstance(value, bytes) else orjson.dumps(value)
    return httpbody_pb2.HttpBody(content_type="application/json", data=data)


def unit_id_of(world: LinkWorld, device: str = DEVICE) -> str:
    def read(s: Any) -> str:
        user_id = users.get_user_by_username(s, USER).id  # type: ignore[union-attr]
        return str(devices.get_device(s, user_id, device).unit_id)

    return world.database.call(read)


def execute(unit_id: str, value: object) -> dongle_pb2.ExecuteCommandRequest:
    return dongle_pb2.ExecuteCommandRequest(unit_id=unit_id, body=body(value))


def execute_raw(unit_id: str, value: object) -> dongle_pb2.ExecuteRawCommandRequest:
    return dongle_pb2.ExecuteRawCommandRequest(unit_id=unit_id, body=body(value))


def agent_with(world: LinkWorld, runner: FakeRunner | None) -> Agent:
    agent = world.agent()
    if runner is not None:
        agent.commands = runner
    return agent


@asynccontextmanager
async def stub_for(world: LinkWorld) -> AsyncIterator[dongle_pb2_grpc.DongleCommandServiceStub]:
    async with grpc.aio.insecure_channel(world.target) as channel:
        yield dongle_pb2_grpc.DongleCommandServiceStub(channel)


@asynccontextmanager
async def linked(world: LinkWorld, runner: FakeRunner | None) -> AsyncIterator[None]:
    task = await connected(agent_with(world, runner))
    try:
        yield
    finally:
        await stopped(task)


async def failed(call: Any) -> tuple[grpc.StatusCode, str, str, Any]:
    """The code, message, REST status and REST body of a refused call."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    trailing = dict(info.value.trailing_metadata() or ())
    rest_body = trailing.get(ERROR_BODY_KEY)
    return (
        info.value.code(),
        info.value.details() or "",
        str(trailing.get(HTTP_STATUS_KEY)),
        None if rest_body is None else orjson.loads(rest_body),
    )


class CommandDevice(RawDevice):
    """A hand-driven device stream that can answer a Command with anything."""

    async def __aenter__(self) -> CommandDevice:
        await super().__aenter__()
        return self

    async def send(self, message: agent_pb2.ConnectRequest) -> None:
        await self._call.write(message)

    async def command(self) -> agent_pb2.Command:
        message = await self.receive()
        assert message.WhichOneof("kind") == "command", message
        return message.command


# -- commands that run -------------------------------------------------------------------


def test_structured_and_raw_commands_answer_the_runners_result_as_json(
    world: LinkWorld,
) -> None:
    unit_id = unit_id_of(world)
    runner = FakeRunner()

    async def scenario() -> list[httpbody_pb2.HttpBody]:
        auth = login(world)
        async with linked(world, runner), stub_for(world) as stub:
            return [
                await stub.ExecuteCommand(
                    execute(unit_id, {"command": "test.echo", "arg": ["ls", "-l"], "kwarg": {}}),
                    metadata=auth,
                ),
                await stub.ExecuteCommand(
                    execute(unit_id, {"command": "test.echo", "kwarg": {"force": True}}),
                    metadata=auth,
                ),
                await stub.ExecuteCommand(
                    execute(unit_id, {"command": "test.echo"}), metadata=auth
                ),
                await stub.ExecuteCommand(
                    execute(unit_id, {"command": "test.true"}), metadata=auth
                ),
                await stub.ExecuteCommand(
                    execute(unit_id.upper(), {"command": "test.string"}), metadata=auth
                ),
                await stub.ExecuteRawCommand(
                    execute_raw(unit_id, {"command": "cmd.run ls -l"}), metadata=auth
                ),
            ]

    answers = world.run(scenario)
    assert {answer.content_type for answer in answers} == {"application/json"}
    assert [orjson.loads(answer.data) for answer in answers] == [
        {"args": ["ls", "-l"], "kwargs": {}},
        {"args": [], "kwargs": {"force": True}},
        {"args": [], "kwargs": {}},
        True,
        "total 0\n",
        {"line": "cmd.run ls -l"},
    ]
    assert answers[3].data == b"true"
    assert runner.calls[-1] == ("raw", ["cmd.run ls -l"], {})


def test_nested_arguments_reach_the_runner_as_sent(world: LinkWorld) -> None:
    unit_id = unit_id_of(world)
    runner = FakeRunner()
    networks = [{"ssid": "Network-1", "psk": "p\u00e4ss", "priority": 2}, {"n": 2**53 + 1}]

    async def scenario() -> bytes:
        async with linked(world, runner), stub_for(world) as stub:
            answer = await stub.ExecuteCommand(
                execute(
                    unit_id,
                    {
                        "command": "test.echo",
                        "arg": ["wpa_supplicant:networks", networks],
                        "kwarg": {"destructive": True, "force": True},
                    },
                ),
                metadata=login(world),
            )
        return answer.data

    assert orjson.loads(world.run(scenario)) == {
        "args": ["wpa_supplicant:networks", networks],
        "kwargs": {"destructive": True, "force": True},
    }
    # Integers stay integers all the way (never doubles, as a protobuf Value would make).
    assert runner.calls[0][1][1][1]["n"] == 2**53 + 1


# -- failures ----------------------------------------------------------------------------


def test_the_devices_failures_keep_their_status_and_message(world: LinkWorld) -> None:
    unit_id = unit_id_of(world)

    async def scenario() -> list[tuple[grpc.StatusCode, str, str, Any]]:
        auth = login(world)
        async with linked(world, FakeRunner()), stub_for(world) as stub:
            outcomes = [
                await failed(
                    stub.ExecuteCommand(execute(unit_id, {"command": name}), metadata=auth)
                )
                for name in ("test.fail", "test.busy", "test.slow", "test.crash", "test.object")
            ]
            # The agent carries on after every one of them.
            after = await stub.ExecuteCommand(
                execute(unit_id, {"command": "test.true"}), metadata=auth
            )
            assert after.data == b"true"
        return outcomes

    outcomes = world.run(scenario)
    message = "'test.fail' is not available"
    assert outcomes[0] == (grpc.StatusCode.INVALID_ARGUMENT, message, "400", {"detail": message})
    assert outcomes[1][:3] == (
        grpc.StatusCode.UNAVAILABLE,
        "the grains file cannot be written",
        "503",
    )
    assert outcomes[2][:3] == (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "cmd.run timed out after 1 s",
        "504",
    )
    crash = "the command failed on the device: RuntimeError: boom"
    assert outcomes[3] == (grpc.StatusCode.UNAVAILABLE, crash, "502", {"detail": crash})
    code, text, status, _ = outcomes[4]
    assert (code, status) == (grpc.StatusCode.UNAVAILABLE, "502")
    assert text.startswith("the command's result is not JSON: TypeError")


def test_an_agent_without_commands_refuses_every_command(world: LinkWorld) -> None:
    unit_id = unit_id_of(world)

    async def scenario() -> list[tuple[grpc.StatusCode, str, str, Any]]:
        auth = login(world)
        async with linked(world, None), stub_for(world) as stub:
            return [
                await failed(
                    stub.ExecuteCommand(execute(unit_id, {"command": "test.ping"}), metadata=auth)
                ),
                await failed(
                    stub.ExecuteRawCommand(
                        execute_raw(unit_id, {"command": "test.ping"}), metadata=auth
                    )
                ),
            ]

    for outcome in world.run(scenario):
        assert outcome[:3] == (grpc.StatusCode.INVALID_ARGUMENT, NO_COMMANDS, "400")


BAD_EXECUTE_BODIES: list[tuple[bytes, str]] = [
    (b"", "the body must be valid JSON"),
    (b"{", "the body must be valid JSON"),
    (b'{"command": "test.echo"} trailing', "the body must be valid JSON"),
    (b'{"command": NaN}', "the body must be valid JSON"),
    (b"[]", "a command list starts with the command's name"),
    (b"[7]", "command must be a non-empty string"),
    (b'"test.echo"', "the body must be {"),
    (b"{}", "command must be a non-empty string"),
    (b'{"command": ""}', "command must be a non-empty string"),
    (b'{"command": 7}', "command must be a non-empty string"),
    (b'{"command": ["cmd.run"]}', "command must be a non-empty string"),
    (b'{"command": "test.echo", "kwarg": []}', "kwarg must be a JSON object"),
    (b'{"command": "test.echo", "kwarg": "a=1"}', "kwarg must be a JSON object"),
    (b'{"command": "test.echo", "args": []}', "unknown key 'args'"),
]
BAD_RAW_BODIES: list[tuple[bytes, str]] = [
    (b"not json", "the body must be valid JSON"),
    (b"[]", 'the body must be {"command": "<command and its arguments>"}'),
    (b'{"command": ["cmd.run", "ls"]}', "command must be a non-empty string"),
    (b'{"command": "   "}', "command must be a non-empty string"),
    (b'{"command": "cmd.run ls", "arg": []}', 'the body must be {"command"'),
]


def test_bad_bodies_are_refused_before_the_device_is_asked(world: LinkWorld) -> None:
    unit_id = unit_id_of(world)
    runner = FakeRunner()

    async def scenario() -> list[tuple[grpc.StatusCode, str, str, Any]]:
        auth = login(world)
        async with linked(world, runner), stub_for(world) as stub:
            outcomes = [
                await failed(stub.ExecuteCommand(execute(unit_id, data), metadata=auth))
                for data, _ in BAD_EXECUTE_BODIES
            ]
            outcomes += [
                await failed(stub.ExecuteRawCommand(execute_raw(unit_id, data), metadata=auth))
                for data, _ in BAD_RAW_BODIES
            ]
        return outcomes

    outcomes = world.run(scenario)
    for (data, expected), (code, text, status, rest_body) in zip(
        BAD_EXECUTE_BODIES + BAD_RAW_BODIES, outcomes, strict=True
    ):
        assert (code, status) == (grpc.StatusCode.INVALID_ARGUMENT, "400"), data
        assert text.startswith(expected), (data, text)
        assert rest_body == {"detail": text}
    assert runner.calls == []


# -- which device ------------------------------------------------------------------------


def test_a_unit_id_that_is_not_the_callers_answers_as_one_that_does_not_exist(
    world: LinkWorld,
) -> None:
    unit_id = unit_id_of(world)

    def create_bob(s: Any) -> str:
        bob = users.create_user(s, "bob@example.com", "a-long-password", username="bob")
        return str(devices.create_device(s, bob.id, "bobs", "bobs-credentials")[0].unit_id)

    bobs_unit = world.database.call(create_bob)
    unknown = "00000000-0000-4000-8000-000000000000"

    async def scenario() -> list[tuple[grpc.StatusCode, str, str, Any]]:
        ada = login(world)
        bob = login(world, "bob")
        only_other = scoped(world, [{"device": "other"}])
        async with linked(world, FakeRunner()), stub_for(world) as stub:
            cmd = {"command": "test.true"}
            return [
                await failed(stub.ExecuteCommand(execute(bobs_unit, cmd), metadata=ada)),
                await failed(stub.ExecuteCommand(execute(unknown, cmd), metadata=ada)),
                await failed(stub.ExecuteCommand(execute("not-a-uuid", cmd), metadata=ada)),
                await failed(stub.ExecuteCommand(execute(DEVICE, cmd), metadata=ada)),
                await failed(stub.ExecuteCommand(execute(unit_id, cmd), metadata=bob)),
                await failed(
                    stub.ExecuteRawCommand(execute_raw(unit_id, cmd), metadata=only_other)
                ),
            ]

    for outcome in world.run(scenario):
        assert outcome == (
            grpc.StatusCode.NOT_FOUND,
            DEVICE_NOT_FOUND,
            "404",
            {"detail": DEVICE_NOT_FOUND},
        )


def test_an_offline_device_is_not_found_and_no_credentials_are_unauthenticated(
    world: LinkWorld,
) -> None:
    unit_id = unit_id_of(world)

    def create_token(s: Any) -> str:
        user_id = users.get_user_by_username(s, USER).id  # type: ignore[union-attr]
        return api_tokens.create_api_token(s, user_id, "script")[1]

    secret = world.database.call(create_token)

    async def scenario() -> tuple[Any, ...]:
        api_token: Metadata = (("authorization", f"APIToken {secret}"),)
        async with stub_for(world) as stub:
            offline = await failed(
                stub.ExecuteCommand(execute(unit_id, {"command": "test.true"}), metadata=api_token)
            )
            anonymous = await refused(
                stub.ExecuteCommand(execute(unit_id, {"command": "test.true"}))
            )
            async with linked(world, FakeRunner()):
                online = await stub.ExecuteCommand(
                    execute(unit_id, {"command": "test.true"}), metadata=api_token
                )
        return offline, anonymous, online.data

    offline, anonymous, online = world.run(scenario)
    assert offline[:3] == (grpc.StatusCode.NOT_FOUND, "device 'boiler' is not connected", "404")
    assert anonymous[0] == grpc.StatusCode.UNAUTHENTICATED
    assert online == b"true"


# -- deadlines, cancelling, limits -------------------------------------------------------


def test_the_device_is_given_the_deadline_and_then_a_cancel(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    world = make_world(LinkLimits(call_timeout_s=0.5))
    unit_id = unit_id_of(world)

    async def scenario() -> tuple[agent_pb2.Command, tuple[Any, ...], agent_pb2.ConnectResponse]:
        async with CommandDevice(world, []) as device, stub_for(world) as stub:
            call = stub.ExecuteRawCommand(
                execute_raw(unit_id, {"command": "cmd.run sleep 60"}),
                metadata=login(world),
                timeout=30,
            )
            sent = await device.command()
            outcome = await failed(call)
            cancel = await device.receive()
        return sent, outcome, cancel

    sent, outcome, cancel = world.run(scenario)
    assert sent.raw_line == "cmd.run sleep 60"
    assert 0 < sent.deadline_ms <= 500
    assert outcome == (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "device 'boiler' did not answer in time",
        "504",
        {"detail": "device 'boiler' did not answer in time"},
    )
    assert cancel.cancel.call_id == sent.call_id


def test_a_caller_that_goes_away_cancels_the_command_on_the_agent(world: LinkWorld) -> None:
    unit_id = unit_id_of(world)
    runner = FakeRunner()

    async def scenario() -> bytes:
        auth = login(world)
        async with linked(world, runner), stub_for(world) as stub:
            call = stub.ExecuteCommand(execute(unit_id, {"command": "test.hold"}), metadata=auth)
            await asyncio.wait_for(runner.held.wait(), GENEROUS_S)
            call.cancel()
            await asyncio.wait_for(runner.cancelled.wait(), GENEROUS_S)
            again = await stub.ExecuteCommand(
                execute(unit_id, {"command": "test.true"}), metadata=auth
            )
        return again.data

    assert world.run(scenario) == b"true"
    assert runner.cancelled.is_set()


def test_commands_and_resource_calls_share_the_in_flight_limit(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    world = make_world(LinkLimits(max_calls_in_flight=1))
    unit_id = unit_id_of(world)

    async def scenario() -> tuple[Any, ...]:
        auth = login(world)
        slow = [output_resource("slow")]
        async with CommandDevice(world, slow) as device, stub_for(world) as stub:
            first = stub.ExecuteCommand(execute(unit_id, {"command": "test.hold"}), metadata=auth)
            sent = await device.command()
            second = await failed(
                stub.ExecuteCommand(execute(unit_id, {"command": "test.true"}), metadata=auth)
            )
            link = world.running.state.links.get(world.key)
            assert link is not None
            with pytest.raises(errors.Throttled) as resource_call:
                await link.invoke("slow", None, 1)
            await device.send(
                agent_pb2.ConnectRequest(
                    command_result=agent_pb2.CommandResult(
                        call_id=sent.call_id, result_json=b'{"done": 1}'
                    )
                )
            )
            answer = await first
        return second, resource_call.value.message, answer.data

    second, resource_refusal, answer = world.run(scenario)
    assert second[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert second[2] == "429"
    assert "calls in flight" in second[1]
    assert resource_refusal == second[1]  # a resource call is refused alike
    assert answer == b'{"done": 1}'


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            agent_pb2.ConnectRequest(result=agent_pb2.Result(call_id=0)),
            (grpc.StatusCode.UNAVAILABLE, WRONG_ANSWER, "502"),
        ),
        (
            agent_pb2.ConnectRequest(
                command_result=agent_pb2.CommandResult(call_id=0, result_json=b"{nope")
            ),
            (grpc.StatusCode.UNAVAILABLE, "the device's result is not JSON", "502"),
        ),
        (
            agent_pb2.ConnectRequest(command_result=agent_pb2.CommandResult(call_id=0)),
            (grpc.StatusCode.UNAVAILABLE, "the device answered the command with no result", "502"),
        ),
        (
            agent_pb2.ConnectRequest(
                command_result=agent_pb2.CommandResult(
                    call_id=0, failure=agent_pb2.CommandFailure(status=500, message="oops")
                )
            ),
            (grpc.StatusCode.UNAVAILABLE, "oops", "502"),
        ),
        (
            agent_pb2.ConnectRequest(
                command_result=agent_pb2.CommandResult(
                    call_id=0, failure=agent_pb2.CommandFailure(status=418, message="")
                )
            ),
            (grpc.StatusCode.INVALID_ARGUMENT, "the device's command failed", "400"),
        ),
    ],
)
def test_odd_answers_of_a_device_are_bad_gateway_never_a_500(
    world: LinkWorld, answer: agent_pb2.ConnectRequest, expected: tuple[Any, ...]
) -> None:
    unit_id = unit_id_of(world)

    async def scenario() -> tuple[Any, ...]:
        async with CommandDevice(world, []) as device, stub_for(world) as stub:
            call = stub.ExecuteCommand(
                execute(unit_id, {"command": "test.true"}), metadata=login(world)
            )
            sent = await device.command()
            reply = agent_pb2.ConnectRequest()
            reply.CopyFrom(answer)
            getattr(reply, reply.WhichOneof("kind") or "").call_id = sent.call_id
            await device.send(reply)
            return await failed(call)

    assert world.run(scenario)[:3] == expected


def test_a_command_larger_than_a_device_accepts_is_refused_at_once(world: LinkWorld) -> None:
    unit_id = unit_id_of(world)
    runner = FakeRunner()
    big = {"command": "test.echo", "arg": ["x" * (MAX_INPUT_BYTES + 1)]}

    async def scenario() -> tuple[Any, ...]:
        async with linked(world, runner), stub_for(world) as stub:
            return await failed(stub.ExecuteCommand(execute(unit_id, big), metadata=login(world)))

    code, text, status, _ = world.run(scenario)
    assert (code, status) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "413")
    assert text == f"the command is larger than a device accepts ({MAX_INPUT_BYTES} bytes)"
    assert runner.calls == []
