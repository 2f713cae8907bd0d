"""Opening the device link with a device token (docs/device-link.md, "Hello")."""

from __future__ import annotations

import grpc
import pytest
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc

from server.auth.device_tokens import sign_stored
from server.storage import devices, users
from server.storage.tokens import device_tokens
from tests.link.conftest import DEVICE, USER, LinkWorld


def issue(world: LinkWorld, device: str = DEVICE, resources: object = None) -> tuple[str, str]:
    """A device token for ``device`` (its id and the JWT), signed by the world's server."""
    signer = world.running.state.signer
    now = world.running.state.clock()
    with world.database.session() as s:
        owner = users.get_user_by_username(s, USER)
        assert owner is not None
        row = device_tokens.create_device_token(
            s, owner.id, device, "link", resources, None, now, signer.current_kid
        )
        token, _kid = sign_stored(signer, row, USER, device, now)
        return row.id, token


def open_link(
    world: LinkWorld, token: str, user: str = USER, device: str = DEVICE
) -> agent_pb2.ConnectResponse | grpc.aio.AioRpcError:
    """The server's first answer to a Hello carrying ``token``: a Welcome or the error."""
    hello = agent_pb2.Hello(user=user, device=device, device_token=token)

    async def scenario() -> agent_pb2.ConnectResponse | grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(world.target) as channel:
            call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
            await call.write(agent_pb2.ConnectRequest(hello=hello))
            try:
                first = await call.read()
            except grpc.aio.AioRpcError as error:
                return error
            registered = world.running.state.links.get(world.key) is not None
            call.cancel()
            assert registered, "a welcomed link is registered"
            return first

    return world.run(scenario)


def refused(answer: object) -> None:
    assert isinstance(answer, grpc.aio.AioRpcError)
    assert answer.code() == grpc.StatusCode.UNAUTHENTICATED
    assert answer.details() == devices.INVALID_DEVICE


def test_a_device_token_opens_the_link_without_a_link_secret(world: LinkWorld) -> None:
    _id, token = issue(world)
    answer = open_link(world, token)
    assert isinstance(answer, agent_pb2.ConnectResponse)
    assert answer.WhichOneof("kind") == "welcome"
    assert answer.welcome.link_secret == ""


def test_a_token_limited_to_some_resources_does_not_open_a_link(world: LinkWorld) -> None:
    _id, token = issue(world, resources=["open"])
    refused(open_link(world, token))


@pytest.mark.parametrize(("user", "device"), [(USER, "other"), ("bob", DEVICE), ("", "")])
def test_a_token_opens_only_its_own_devices_link(world: LinkWorld, user: str, device: str) -> None:
    _id, token = issue(world)
    refused(open_link(world, token, user=user, device=device))


def test_a_deleted_token_does_not_open_the_link(world: LinkWorld) -> None:
    token_id, token = issue(world)
    with world.database.session() as s:
        device_tokens.delete_device_token(s, world.key.user_id, DEVICE, token_id)
    refused(open_link(world, token))


@pytest.mark.parametrize("token", ["", "junk", "a.b.c"])
def test_junk_tokens_are_refused(world: LinkWorld, token: str) -> None:
    refused(open_link(world, token))
