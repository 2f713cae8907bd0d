"""The device link through the real gateway: Envoy carries it like any native gRPC call.

Here, in-process agents: a link opened with an earlier link secret replaces the first, and
the Welcome's limits cross Envoy. Refusals of real agent processes (wrong credentials,
replaced) are in tests/integration/test_agent_process.py, resource calls in
tests/integration/test_rest_resources.py.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc

from device_agent.agent import Agent, LinkRefused
from server.auth.device_tokens import LINK_TOKEN_REFUSED
from server.link.registry import REPLACED
from server.storage.devices import INVALID_DEVICE
from tests.integration.stack import Stack
from tests.link.conftest import connected, stopped

pytestmark = pytest.mark.integration

DEVICE = "gateway_link"
CREDENTIALS = "gateway-link-s3cret"


@pytest.fixture(scope="module")
def device(stack: Stack, ada: dict) -> str:
    stack.cli("device", "create", "--user", "ada", "--device", DEVICE, "--credentials", CREDENTIALS)
    return DEVICE


def agent_for(stack: Stack, credentials: str = CREDENTIALS) -> Agent:
    target = stack.grpc_target
    return Agent(
        lambda: grpc.aio.insecure_channel(target),
        user="ada",
        device=DEVICE,
        credentials=credentials,
    )


def test_a_link_opens_and_is_replaced_through_the_gateway(stack: Stack, device: str) -> None:
    async def scenario() -> tuple[str | None, LinkRefused]:
        first = agent_for(stack)
        first_task = await connected(first)
        second = agent_for(stack, credentials="unused: the link secret opens it")
        second.link_secret = first.link_secret
        second_task = await connected(second)
        try:
            with pytest.raises(LinkRefused) as info:
                await asyncio.wait_for(first_task, 30)
        finally:
            await stopped(second_task)
        return first.link_secret, info.value

    secret, refused = asyncio.run(scenario())
    assert secret
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.details == REPLACED


def test_the_welcome_crosses_the_gateway_with_the_limits(stack: Stack, device: str) -> None:
    async def scenario() -> agent_pb2.Welcome:
        hello = agent_pb2.Hello(user="ada", device=DEVICE, credentials=CREDENTIALS)
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            stream = agent_pb2_grpc.AgentServiceStub(channel).Connect(
                iter([agent_pb2.ConnectRequest(hello=hello)])
            )
            first = await stream.read()
            stream.cancel()
            assert isinstance(first, agent_pb2.ConnectResponse)
            return first.welcome

    welcome = asyncio.run(scenario())
    assert welcome.link_secret
    assert welcome.max_calls_in_flight == 64


def first_answer(stack: Stack, token: str) -> agent_pb2.ConnectResponse | grpc.aio.AioRpcError:
    """The first answer, through the gateway, to a Hello carrying the device token `token`."""

    async def scenario() -> agent_pb2.ConnectResponse | grpc.aio.AioRpcError:
        hello = agent_pb2.Hello(user="ada", device=DEVICE, device_token=token)
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            stream = agent_pb2_grpc.AgentServiceStub(channel).Connect(
                iter([agent_pb2.ConnectRequest(hello=hello)])
            )
            try:
                first = await stream.read()
            except grpc.aio.AioRpcError as error:
                return error
            stream.cancel()
            assert isinstance(first, agent_pb2.ConnectResponse)
            return first

    return asyncio.run(scenario())


def test_only_the_operators_link_token_opens_the_link(stack: Stack, device: str) -> None:
    """A caller's token from the Devices API is refused like a wrong secret; the CLI's link
    token opens the link, is listed with the device's tokens, calls nothing, and deleting
    it there revokes it."""
    access_token = stack.thinger_token("ada")
    login = {"Authorization": f"Bearer {access_token}"}
    callers = stack.device_token(access_token, DEVICE)
    refused = first_answer(stack, callers["token"])
    assert isinstance(refused, grpc.aio.AioRpcError)
    assert (refused.code(), refused.details()) == (
        grpc.StatusCode.UNAUTHENTICATED,
        INVALID_DEVICE,
    )

    link = stack.cli_json(
        "device", "token", "--user", "ada", "--device", DEVICE, "--name", "gateway-link"
    )
    assert set(link) == {"id", "name", "token"}
    welcomed = first_answer(stack, link["token"])
    assert isinstance(welcomed, agent_pb2.ConnectResponse)
    assert welcomed.WhichOneof("kind") == "welcome"

    tokens = f"/v1/users/ada/devices/{DEVICE}/tokens"
    with stack.http() as http:
        listed = http.get(tokens, headers=login)
        assert listed.status_code == 200
        assert {"id": link["id"], "name": "gateway-link", "token": link["token"]} in listed.json()
        as_caller = {"Authorization": f"Bearer {link['token']}"}
        for path in (
            f"/v2/users/ada/devices/{DEVICE}/api",
            f"/v1/users/ada/devices/{DEVICE}/stats",
        ):
            answer = http.get(path, headers=as_caller)
            assert (answer.status_code, answer.json()) == (
                401,
                {"error": {"message": LINK_TOKEN_REFUSED}},
            )
        assert http.delete(f"{tokens}/{link['id']}", headers=login).status_code == 200
    gone = first_answer(stack, link["token"])
    assert isinstance(gone, grpc.aio.AioRpcError)
    assert (gone.code(), gone.details()) == (grpc.StatusCode.UNAUTHENTICATED, INVALID_DEVICE)
