"""ResourceService in-process: generated stubs against a real server, real agents and
hand-driven device streams (to see exactly what the device is sent)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from google.api import httpbody_pb2
from google.protobuf import json_format, struct_pb2
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc
from thingwire.resources.v1 import resources_pb2, resources_pb2_grpc

from device_agent.agent import Agent
from device_agent.resources import from_value, to_value
from server.link.link import LinkLimits
from server.security.jwt_tokens import TokenSigner
from server.services.resources_service import BOTH_INPUTS, input_of, parse_body
from server.storage import devices, users
from server.storage.tokens import api_tokens, user_tokens
from tests.link.conftest import CREDENTIALS, DEVICE, USER, LinkWorld, connected, stopped
from tests.link.test_link import GENEROUS_S, Stuck, declare_examples

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def login(world: LinkWorld, username: str = USER) -> Metadata:
    state = world.running.state
    return bearer(state.signer.access_token(username, state.clock()))


def scoped(world: LinkWorld, grants: list[dict[str, Any]]) -> Metadata:
    """A Thinger user token of ada's limited to `grants`."""
    state = world.running.state
    now = state.clock()

    def create(s: Any) -> str:
        user_id = users.get_user_by_username(s, USER).id  # type: ignore[union-attr]
        return user_tokens.create_access_token(s, user_id, "scoped", grants, now=now).id

    jti = world.database.call(create)
    signer: TokenSigner = state.signer
    return bearer(signer.user_token(USER, jti, now, None))


def value(data: object) -> struct_pb2.Value:
    return json_format.ParseDict(data, struct_pb2.Value())


def raw(data: bytes) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type="application/json", data=data)


@asynccontextmanager
async def stub_for(world: LinkWorld) -> AsyncIterator[resources_pb2_grpc.ResourceServiceStub]:
    async with grpc.aio.insecure_channel(world.target) as channel:
        yield resources_pb2_grpc.ResourceServiceStub(channel)


async def refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""


def get(resource: str, device: str = DEVICE, user: str = USER) -> resources_pb2.GetResourceRequest:
    return resources_pb2.GetResourceRequest(user_id=user, device_id=device, resource=resource)


def post(resource: str, device: str = DEVICE, **fields: Any) -> resources_pb2.CallResourceRequest:
    return resources_pb2.CallResourceRequest(
        user_id=USER, device_id=device, resource=resource, **fields
    )


class RawDevice:
    """A device stream driven by hand: what the server sends it, message by message."""

    def __init__(self, world: LinkWorld, resources: list[agent_pb2.ResourceDeclaration]):
        self._world = world
        self._resources = resources
        self._call: Any = None

    async def __aenter__(self) -> RawDevice:
        self._channel = grpc.aio.insecure_channel(self._world.target)
        await self._channel.__aenter__()
        self._call = agent_pb2_grpc.AgentServiceStub(self._channel).Connect()
        hello = agent_pb2.Hello(
            user=USER, device=DEVICE, credentials=CREDENTIALS, resources=self._resources
        )
        await self._call.write(agent_pb2.ConnectRequest(hello=hello))
        first = await self.receive()
        assert first.WhichOneof("kind") == "welcome"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._call.cancel()
        await self._channel.__aexit__(*exc)

    async def receive(self) -> agent_pb2.ConnectResponse:
        message = await asyncio.wait_for(self._call.read(), GENEROUS_S)
        assert isinstance(message, agent_pb2.ConnectResponse)
        return message

    async def answer(self, call_id: int, output: object) -> None:
        result = agent_pb2.Result(call_id=call_id, output=to_value(output))
        await self._call.write(agent_pb2.ConnectRequest(result=result))


def output_resource(name: str) -> agent_pb2.ResourceDeclaration:
    return agent_pb2.ResourceDeclaration(name=name, kind=agent_pb2.RESOURCE_KIND_OUTPUT)


# -- calls of every kind ------------------------------------------------------------------


def test_every_kind_is_called_through_the_stubs(world: LinkWorld) -> None:
    async def scenario() -> tuple[list[object], dict[str, object]]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        auth = login(world)
        try:
            async with stub_for(world) as stub:
                temperature = await stub.GetResource(get("temperature"), metadata=auth)
                reset = await stub.GetResource(get("reset"), metadata=auth)
                relay = await stub.CallResource(post("relay", input=value(True)), metadata=auth)
                echo = await stub.CallResource(
                    post("echo", input=value({"in": [1, "x"]})), metadata=auth
                )
        finally:
            await stopped(task)
        answers = [
            from_value(temperature.out),
            reset.HasField("out"),
            relay.HasField("out"),
            from_value(echo.out),
        ]
        return answers, agent.state  # type: ignore[attr-defined]

    answers, state = world.run(scenario)
    # gRPC's `input` is taken as it is: {"in": ...} is not unwrapped there.
    assert answers == [21.5, False, False, {"in": [1.0, "x"]}]
    assert state == {"relay": True, "reset": True}


def test_a_rest_body_is_unwrapped_only_when_in_is_its_only_key(world: LinkWorld) -> None:
    bodies = [
        b'{"in": true}',
        b"true",
        b'{"value1": 20, "value2": 10}',
        b'{"in": {"value1": 20, "value2": 10}}',
        b'{"in": 1, "other": 2}',
        b'{"in": {"in": 1}}',
        b"21.5",
        b'{"in": null}',
    ]

    async def scenario() -> list[object]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        auth = login(world)
        try:
            async with stub_for(world) as stub:
                answers = [
                    await stub.CallResource(post("echo", body=raw(b)), metadata=auth)
                    for b in bodies
                ]
        finally:
            await stopped(task)
        return [from_value(a.out) for a in answers]

    assert world.run(scenario) == [
        True,
        True,
        {"value1": 20, "value2": 10},
        {"value1": 20, "value2": 10},
        {"in": 1, "other": 2},
        {"in": 1},
        21.5,
        None,
    ]


def test_a_resource_that_takes_no_input_runs_with_post_and_no_body(world: LinkWorld) -> None:
    async def scenario() -> tuple[object, bool]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        auth = login(world)
        try:
            async with stub_for(world) as stub:
                temperature = await stub.CallResource(post("temperature"), metadata=auth)
                blank = await stub.CallResource(post("reset", body=raw(b" \n")), metadata=auth)
        finally:
            await stopped(task)
        return from_value(temperature.out), blank.HasField("out")

    assert world.run(scenario) == (21.5, False)


def test_kinds_are_enforced(world: LinkWorld) -> None:
    async def scenario() -> list[tuple[grpc.StatusCode, str]]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        auth = login(world)
        try:
            async with stub_for(world) as stub:
                return [
                    await refused(stub.GetResource(get("relay"), metadata=auth)),
                    await refused(stub.GetResource(get("echo"), metadata=auth)),
                    await refused(stub.CallResource(post("relay"), metadata=auth)),
                    await refused(
                        stub.CallResource(post("temperature", body=raw(b"1")), metadata=auth)
                    ),
                    await refused(
                        stub.CallResource(post("reset", input=value(None)), metadata=auth)
                    ),
                ]
        finally:
            await stopped(task)

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert world.run(scenario) == [
        (invalid, "resource 'relay' takes an input value"),
        (invalid, "resource 'echo' takes an input value"),
        (invalid, "resource 'relay' takes an input value"),
        (invalid, "resource 'temperature' takes no input value"),
        (invalid, "resource 'reset' takes no input value"),
    ]


def test_bad_bodies_are_invalid_arguments(world: LinkWorld) -> None:
    async def scenario() -> list[tuple[grpc.StatusCode, str]]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        auth = login(world)
        try:
            async with stub_for(world) as stub:
                return [
                    await refused(stub.CallResource(post("echo", body=raw(b)), metadata=auth))
                    for b in (b'{"in": tru', b"NaN", b"1 2", b"[" * 150 + b"]" * 150)
                ] + [
                    await refused(
                        stub.CallResource(
                            post("echo", input=value(1), body=raw(b"1")), metadata=auth
                        )
                    )
                ]
        finally:
            await stopped(task)

    answers = world.run(scenario)
    assert {code for code, _ in answers} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert all(m.startswith("the body is not valid JSON: ") for _, m in answers[:4])
    assert answers[3][1].endswith("it nests too deeply")
    assert answers[4][1] == BOTH_INPUTS


def test_over_rest_only_the_body_gives_the_input() -> None:
    """`?input.x=1` reaches the request through the transcoder; it is not an input."""
    request = post("relay", input=value({"x": "1"}))
    assert input_of(request, rest=True) is None
    assert from_value(input_of(post("relay", input=value({"x": "1"})))) == {"x": "1"}
    assert parse_body(b"") is None
    assert parse_body(b"  \r\n\t") is None
    assert from_value(parse_body(b'{"in": []}')) == []


def test_describe_lists_the_declared_resources_as_thinger_does(world: LinkWorld) -> None:
    async def scenario() -> dict[str, object]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        try:
            async with stub_for(world) as stub:
                described = await stub.DescribeResources(
                    resources_pb2.DescribeResourcesRequest(user_id=USER, device_id=DEVICE),
                    metadata=login(world),
                )
        finally:
            await stopped(task)
        return json_format.MessageToDict(described)

    assert world.run(scenario) == {
        "temperature": {
            "fn": 3,
            "kind": "output",
            "description": "degrees Celsius",
            "example": 21.5,
        },
        "relay": {"fn": 2, "kind": "input", "description": "", "example": True},
        "echo": {"fn": 4, "kind": "input_output", "description": ""},
        "reset": {"fn": 1, "kind": "none", "description": ""},
    }


# -- failures -----------------------------------------------------------------------------


def test_failures_keep_their_statuses(world: LinkWorld) -> None:
    async def scenario() -> list[tuple[grpc.StatusCode, str]]:
        auth = login(world)
        async with stub_for(world) as stub:
            offline = await refused(stub.GetResource(get("temperature"), metadata=auth))
            described = await refused(
                stub.DescribeResources(
                    resources_pb2.DescribeResourcesRequest(user_id=USER, device_id=DEVICE),
                    metadata=auth,
                )
            )
            agent = world.agent()
            declare_examples(agent)

            @agent.output("broken")
            def broken() -> None:
                raise OSError("sensor unplugged")

            task = await connected(agent)
            try:
                unknown = await refused(stub.GetResource(get("humidity"), metadata=auth))
                failed = await refused(stub.GetResource(get("broken"), metadata=auth))
                after = await stub.GetResource(get("temperature"), metadata=auth)
                assert from_value(after.out) == 21.5  # the agent carries on
            finally:
                await stopped(task)
        return [offline, described, unknown, failed]

    assert world.run(scenario) == [
        (grpc.StatusCode.NOT_FOUND, "device 'boiler' is not connected"),
        (grpc.StatusCode.NOT_FOUND, "device 'boiler' is not connected"),
        (grpc.StatusCode.NOT_FOUND, "resource 'humidity' not found"),
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "the device reported an error: sensor unplugged",
        ),
    ]


def test_a_device_that_drops_mid_call_fails_the_call_at_once(world: LinkWorld) -> None:
    async def scenario() -> tuple[grpc.StatusCode, str, float]:
        agent = world.agent()
        stuck = Stuck(agent)
        task = await connected(agent)
        async with stub_for(world) as stub:
            call = stub.GetResource(get("wait"), metadata=login(world))
            await asyncio.wait_for(stuck.started.wait(), GENEROUS_S)
            begun = time.monotonic()
            await stopped(task)
            code, details = await refused(call)
        return code, details, time.monotonic() - begun

    code, details, waited = world.run(scenario)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details.startswith("device disconnected")
    assert waited < 5.0


# -- deadlines and cancellation -----------------------------------------------------------


def test_the_device_is_given_the_callers_shorter_deadline_and_then_a_cancel(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    world = make_world(LinkLimits(call_timeout_s=20.0))

    async def scenario() -> tuple[grpc.StatusCode, int, str]:
        async with RawDevice(world, [output_resource("slow")]) as device, stub_for(world) as stub:
            call = stub.GetResource(get("slow"), metadata=login(world), timeout=0.5)
            invoke = (await device.receive()).invoke
            code, _ = await refused(call)
            cancel = await device.receive()
        assert cancel.cancel.call_id == invoke.call_id
        return code, invoke.deadline_ms, cancel.WhichOneof("kind") or ""

    code, deadline_ms, then = world.run(scenario)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0 < deadline_ms <= 500
    assert then == "cancel"


def test_the_servers_default_deadline_caps_a_longer_one(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    world = make_world(LinkLimits(call_timeout_s=0.4))

    async def scenario() -> tuple[tuple[grpc.StatusCode, str], list[int], float]:
        async with RawDevice(world, [output_resource("slow")]) as device, stub_for(world) as stub:
            begun = time.monotonic()
            without = stub.GetResource(get("slow"), metadata=login(world))
            first = (await device.receive()).invoke
            answer = await refused(without)
            waited = time.monotonic() - begun
            assert (await device.receive()).cancel.call_id == first.call_id
            longer = stub.GetResource(get("slow"), metadata=login(world), timeout=60)
            second = (await device.receive()).invoke
            await refused(longer)
        return answer, [first.deadline_ms, second.deadline_ms], waited

    answer, deadlines, waited = world.run(scenario)
    assert answer == (grpc.StatusCode.DEADLINE_EXCEEDED, "device 'boiler' did not answer in time")
    assert deadlines == [400, 400]
    assert 0.35 < waited < 5.0


def test_a_cancelled_grpc_call_cancels_the_call_on_the_device(world: LinkWorld) -> None:
    async def scenario() -> tuple[int, int, object]:
        async with RawDevice(world, [output_resource("slow")]) as device, stub_for(world) as stub:
            call = stub.GetResource(get("slow"), metadata=login(world))
            invoke = (await device.receive()).invoke
            call.cancel()
            cancel = (await device.receive()).cancel
            # The link still works: a late answer to the cancelled call is dropped.
            await device.answer(invoke.call_id, "late")
            again = stub.GetResource(get("slow"), metadata=login(world))
            second = (await device.receive()).invoke
            await device.answer(second.call_id, "fresh")
            answer = await again
        return invoke.call_id, cancel.call_id, from_value(answer.out)

    invoked, cancelled, answer = world.run(scenario)
    assert cancelled == invoked
    assert answer == "fresh"


# -- who may call -------------------------------------------------------------------------


def test_another_users_path_is_refused_whether_or_not_the_device_exists(
    world: LinkWorld,
) -> None:
    with world.database.session() as s:
        bob = users.create_user(s, "bob@example.com", "a-long-password", username="bob")
        devices.create_device(s, bob.id, DEVICE, "bob-credentials")

    async def scenario() -> list[tuple[grpc.StatusCode, str]]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        as_bob = login(world, "bob")
        try:
            async with stub_for(world) as stub:
                return [
                    await refused(stub.GetResource(get("temperature"), metadata=as_bob)),
                    await refused(
                        stub.GetResource(get("temperature", device="nothing"), metadata=as_bob)
                    ),
                    await refused(
                        stub.DescribeResources(
                            resources_pb2.DescribeResourcesRequest(user_id=USER, device_id=DEVICE),
                            metadata=as_bob,
                        )
                    ),
                    # bob's own device of the same name is his, and it is offline.
                    await refused(
                        stub.GetResource(get("temperature", user="bob"), metadata=as_bob)
                    ),
                ]
        finally:
            await stopped(task)

    unauthenticated = (grpc.StatusCode.UNAUTHENTICATED, "not authorized for user 'ada'")
    assert world.run(scenario) == [
        unauthenticated,
        unauthenticated,
        unauthenticated,
        (grpc.StatusCode.NOT_FOUND, "device 'boiler' is not connected"),
    ]


def test_scoped_tokens_reach_only_their_devices_and_resources(world: LinkWorld) -> None:
    async def scenario() -> dict[str, object]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        other_device = scoped(world, [{"device": "other"}])
        relay_only = scoped(world, [{"device": DEVICE, "resources": ["relay"]}])
        read_only = scoped(world, [{"device": DEVICE, "actions": ["read"]}])
        describe = resources_pb2.DescribeResourcesRequest(user_id=USER, device_id=DEVICE)
        try:
            async with stub_for(world) as stub:
                return {
                    "other on boiler": await refused(
                        stub.GetResource(get("temperature"), metadata=other_device)
                    ),
                    "other on a device that does not exist": await refused(
                        stub.GetResource(get("temperature", device="ghost"), metadata=other_device)
                    ),
                    "relay token on temperature": await refused(
                        stub.GetResource(get("temperature"), metadata=relay_only)
                    ),
                    "relay token on relay": (
                        await stub.CallResource(
                            post("relay", input=value(True)), metadata=relay_only
                        )
                    ).HasField("out"),
                    "relay token describes": list(
                        (await stub.DescribeResources(describe, metadata=relay_only)).fields
                    ),
                    "read token calls": await refused(
                        stub.GetResource(get("temperature"), metadata=read_only)
                    ),
                    "read token describes": sorted(
                        (await stub.DescribeResources(describe, metadata=read_only)).fields
                    ),
                }
        finally:
            await stopped(task)

    refusal = grpc.StatusCode.UNAUTHENTICATED
    assert world.run(scenario) == {
        "other on boiler": (refusal, "not authorized for device 'boiler'"),
        "other on a device that does not exist": (refusal, "not authorized for device 'ghost'"),
        "relay token on temperature": (refusal, "not authorized for device 'boiler'"),
        "relay token on relay": False,
        "relay token describes": ["relay"],
        "read token calls": (refusal, "not authorized for device 'boiler'"),
        "read token describes": ["echo", "relay", "reset", "temperature"],
    }


def test_an_api_token_and_no_credentials(world: LinkWorld) -> None:
    def create(s: Any) -> str:
        user_id = users.get_user_by_username(s, USER).id  # type: ignore[union-attr]
        return api_tokens.create_api_token(s, user_id, "script")[1]

    secret = world.database.call(create)

    async def scenario() -> tuple[object, tuple[grpc.StatusCode, str]]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        try:
            async with stub_for(world) as stub:
                answer = await stub.GetResource(
                    get("temperature"), metadata=(("authorization", f"APIToken {secret}"),)
                )
                anonymous = await refused(stub.GetResource(get("temperature")))
        finally:
            await stopped(task)
        return from_value(answer.out), anonymous

    answer, anonymous = world.run(scenario)
    assert answer == 21.5
    assert anonymous[0] == grpc.StatusCode.UNAUTHENTICATED


def test_many_concurrent_calls_share_one_link(world: LinkWorld) -> None:
    async def scenario() -> list[object]:
        agent: Agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        auth = login(world)
        try:
            async with stub_for(world) as stub:
                answers = await asyncio.gather(
                    *(
                        stub.CallResource(post("echo", input=value(i)), metadata=auth)
                        for i in range(200)
                    )
                )
        finally:
            await stopped(task)
        return [from_value(a.out) for a in answers]

    assert world.run(scenario) == [float(i) for i in range(200)]
