"""The device's side of a relayed command (`device_agent/command_calls.py`) and the server's
reading of its answer (`server/link/commands.py`), each on its own, plus the agent's own
deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import orjson
import pytest
from thingwire.agent.v1 import agent_pb2

from device_agent import command_calls
from device_agent.commands import CommandError, CommandTimeout, CommandUnavailable
from server import errors
from server.interceptors import status_for
from server.link import commands
from server.link import nats_wire as wire
from server.rest_errors import HTTP_STATUS_BY_CODE
from tests.link.conftest import LinkWorld
from tests.link.test_command_relay import (
    FakeRunner,
    execute,
    failed,
    linked,
    stub_for,
    unit_id_of,
)
from tests.link.test_resources_service import login


class Raising:
    """A runner whose every command raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def execute(self, command: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        raise self.error

    async def execute_raw(self, line: str) -> Any:
        raise self.error


def answered(runner: Any, command: agent_pb2.Command) -> agent_pb2.CommandResult:
    command.call_id = 7
    return asyncio.run(command_calls.answer(runner, command))


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (CommandError("unknown command 'x.y'"), 400, "unknown command 'x.y'"),
        (CommandUnavailable("no modem"), 503, "no modem"),
        (CommandTimeout("timed out after 5 s"), 504, "timed out after 5 s"),
        (CommandError(), 400, "CommandError"),
        (ValueError("bad"), 502, "the command failed on the device: ValueError: bad"),
        (KeyError("k"), 502, "the command failed on the device: KeyError: 'k'"),
        (OSError(), 502, "the command failed on the device: OSError"),
    ],
)
def test_a_runners_failure_becomes_its_status_and_message(
    error: Exception, status: int, message: str
) -> None:
    result = answered(Raising(error), commands.raw("cmd.run ls"))
    assert result.call_id == 7
    assert result.WhichOneof("outcome") == "failure"
    assert (result.failure.status, result.failure.message) == (status, message)


def test_a_cancelled_command_answers_nothing() -> None:
    with pytest.raises(asyncio.CancelledError):
        answered(Raising(asyncio.CancelledError()), commands.raw("cmd.run ls"))


def test_results_are_written_as_json_and_arguments_read_from_it() -> None:
    runner = FakeRunner()
    result = answered(runner, commands.structured("test.echo", ["a", 1], {"k": None}))
    assert orjson.loads(result.result_json) == {"args": ["a", 1], "kwargs": {"k": None}}
    assert answered(runner, commands.structured("test.true", [], {})).result_json == b"true"
    empty = agent_pb2.Command(structured=agent_pb2.StructuredCommand(command="test.echo"))
    assert orjson.loads(answered(runner, empty).result_json) == {"args": [], "kwargs": {}}


@pytest.mark.parametrize(
    ("args_json", "kwargs_json"),
    [(b"{", b"{}"), (b"[]", b"nope"), (b"{}", b"{}"), (b"[]", b"[]")],
)
def test_arguments_that_are_not_an_array_and_an_object_are_refused(
    args_json: bytes, kwargs_json: bytes
) -> None:
    runner = FakeRunner()
    command = agent_pb2.Command(
        structured=agent_pb2.StructuredCommand(
            command="test.echo", args_json=args_json, kwargs_json=kwargs_json
        )
    )
    result = answered(runner, command)
    assert result.failure.status == 400
    assert runner.calls == []


def test_no_runner_refuses_every_command() -> None:
    result = answered(command_calls.NoCommands(), commands.raw("test.ping"))
    assert (result.failure.status, result.failure.message) == (400, command_calls.NO_COMMANDS)


@pytest.mark.parametrize(
    ("status", "error", "http"),
    [
        (400, errors.InvalidArgument, 400),
        (404, errors.InvalidArgument, 400),
        (413, errors.PayloadTooLarge, 413),
        (429, errors.Throttled, 429),
        (503, errors.Unavailable, 503),
        (504, errors.DeadlineExceeded, 504),
        (500, errors.BadGateway, 502),
        (502, errors.BadGateway, 502),
        (0, errors.BadGateway, 502),
        (200, errors.BadGateway, 502),
    ],
)
def test_a_devices_failure_status_maps_to_one_domain_error(
    status: int, error: type[errors.ThingwireError], http: int
) -> None:
    mapped = commands.failure_error(status, "why")
    assert type(mapped) is error
    assert mapped.message == "why"
    assert (mapped.http_status or HTTP_STATUS_BY_CODE[status_for(mapped)]) == http


def test_commands_cross_replicas_as_they_were_written() -> None:
    for command in (
        commands.structured("grains.set", ["k", {"a": [1]}], {"force": True}),
        commands.raw("cmd.run ls -l"),
    ):
        assert wire.decode_command(wire.encode_command(command)) == command
    with pytest.raises(errors.InvalidArgument):
        wire.decode_command(b"\xff\xff\xff")
    # A BadGateway crosses as itself, its 502 kept.
    with pytest.raises(errors.BadGateway):
        wire.raise_if_error(wire.error_headers(errors.BadGateway("crashed")))


class TimingOut(FakeRunner):
    """A runner whose command raises TimeoutError of its own, or outlives its deadline."""

    async def execute(self, command: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if command == "own.timeout":
            raise TimeoutError
        return await super().execute(command, args, kwargs)


def test_a_runners_own_timeout_is_504_and_the_deadline_cancels_the_command(
    world: LinkWorld,
) -> None:
    unit_id = unit_id_of(world)
    runner = TimingOut()

    async def scenario() -> tuple[Any, ...]:
        async with linked(world, runner), stub_for(world) as stub:
            own = await failed(
                stub.ExecuteCommand(
                    execute(unit_id, {"command": "own.timeout"}), metadata=login(world)
                )
            )
            held = await failed(
                stub.ExecuteCommand(
                    execute(unit_id, {"command": "test.hold"}), metadata=login(world), timeout=0.5
                )
            )
            await asyncio.wait_for(runner.cancelled.wait(), 10)
        return own, held

    own, held = world.run(scenario)
    assert own[:3] == (grpc.StatusCode.DEADLINE_EXCEEDED, "the command timed out", "504")
    assert held[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert runner.cancelled.is_set()
