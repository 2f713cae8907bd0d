"""Opening the device link with a link token (docs/device-link.md, "Hello"), and why no
caller's device token can: a token made for calling a device must never be the device."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import jwt
import pytest
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc
from thingwire.devices.v1 import devices_pb2, devices_pb2_grpc, stats_pb2, stats_pb2_grpc
from thingwire.resources.v1 import resources_pb2, resources_pb2_grpc

from device_agent.agent import Agent, LinkRefused
from server.auth.device_tokens import LINK_TOKEN_REFUSED, sign_stored
from server.clock import utc_now
from server.errors import InvalidArgument, Unauthenticated
from server.security.jwt_tokens import TokenSigner
from server.security.keys import KeyRing
from server.services.device_service import LINK_TOKEN_DELETED
from server.storage import devices, users
from server.storage.models import DeviceToken
from server.storage.tokens import device_tokens
from tests.link.conftest import DEVICE, FAST, USER, LinkWorld, connected, stopped

Metadata = tuple[tuple[str, str], ...]


def issue(
    world: LinkWorld,
    device: str = DEVICE,
    resources: object = None,
    *,
    link: bool = True,
    expired: bool = False,
) -> tuple[str, str]:
    """A device token for ``device`` (its id and the JWT), signed by the world's server: a
    link token unless ``link`` is False; one that expired a second ago if ``expired``."""
    signer = world.running.state.signer
    now = world.running.state.clock()
    issued, expires = (
        (now - timedelta(hours=1), now - timedelta(seconds=1)) if expired else (now, None)
    )
    with world.database.session() as s:
        owner = users.get_user_by_username(s, USER)
        assert owner is not None
        row = device_tokens.create_device_token(
            s, owner.id, device, "link", resources, expires, issued, signer.current_kid, link=link
        )
        token, _kid = sign_stored(signer, row, USER, device, now)
        return row.id, token


def login(world: LinkWorld) -> Metadata:
    state = world.running.state
    return (("authorization", f"Bearer {state.signer.access_token(USER, state.clock())}"),)


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


def test_a_link_token_opens_the_link_without_a_link_secret(world: LinkWorld) -> None:
    _id, token = issue(world)
    answer = open_link(world, token)
    assert isinstance(answer, agent_pb2.ConnectResponse)
    assert answer.WhichOneof("kind") == "welcome"
    assert answer.welcome.link_secret == ""


def test_a_token_made_through_the_devices_api_does_not_open_the_link(world: LinkWorld) -> None:
    """The audit's case: a caller's token (a dashboard's, naming no resources) is refused
    like any wrong secret, so it cannot replace the real device's link."""

    async def create() -> str:
        async with grpc.aio.insecure_channel(world.target) as channel:
            created = await devices_pb2_grpc.DeviceServiceStub(channel).CreateDeviceToken(
                devices_pb2.CreateDeviceTokenRequest(
                    user_id=USER, device_id=DEVICE, token_name="dashboard"
                ),
                metadata=login(world),
            )
            return created.token

    refused(open_link(world, world.run(create)))


def test_a_callers_token_does_not_open_the_link(world: LinkWorld) -> None:
    for resources in (None, ["open"]):
        _id, token = issue(world, resources=resources, link=False)
        refused(open_link(world, token))


def test_a_callers_token_re_signed_as_a_link_token_is_refused(world: LinkWorld) -> None:
    """``lnk`` is a stored claim: adding it to a caller's token under the server's own key
    gives a token the row does not describe."""
    token_id, _token = issue(world, link=False)
    state = world.running.state
    now = state.clock()
    with world.database.session() as s:
        row = s.get(DeviceToken, token_id)
        assert row is not None
        forged, _kid = state.signer.device_token(
            USER, DEVICE, row.id, row.create_time, None, None, row.kid, now, link=True
        )
    refused(open_link(world, forged))


def test_a_link_token_names_no_resources() -> None:
    with pytest.raises(InvalidArgument, match="a link token names no resources"):
        device_tokens.create_device_token(
            None,  # type: ignore[arg-type]  # refused before storage is touched
            1,
            DEVICE,
            "link",
            ["open"],
            None,
            utc_now(),
            "k",
            link=True,
        )


@pytest.mark.parametrize(("user", "device"), [(USER, "other"), ("bob", DEVICE), ("", "")])
def test_a_token_opens_only_its_own_devices_link(world: LinkWorld, user: str, device: str) -> None:
    _id, token = issue(world)
    refused(open_link(world, token, user=user, device=device))


def test_a_deleted_link_token_does_not_open_the_link(world: LinkWorld) -> None:
    token_id, token = issue(world)
    with world.database.session() as s:
        device_tokens.delete_device_token(s, world.key.user_id, DEVICE, token_id)
    refused(open_link(world, token))


def test_an_expired_link_token_does_not_open_the_link(world: LinkWorld) -> None:
    _id, token = issue(world, expired=True)
    refused(open_link(world, token))


@pytest.mark.parametrize("token", ["", "junk", "a.b.c"])
def test_junk_tokens_are_refused(world: LinkWorld, token: str) -> None:
    refused(open_link(world, token))


def test_a_link_token_calls_nothing(world: LinkWorld) -> None:
    """It is the device's own identity: resource calls and stats refuse it (fail closed),
    while a caller's token of the same device gets past authentication."""
    _id, link_token = issue(world)
    _id, callers = issue(world, link=False)

    async def codes(token: str) -> list[tuple[grpc.StatusCode, str]]:
        metadata = (("authorization", f"Bearer {token}"),)
        answers = []
        async with grpc.aio.insecure_channel(world.target) as channel:
            resources = resources_pb2_grpc.ResourceServiceStub(channel)
            stats = stats_pb2_grpc.DeviceStatsServiceStub(channel)
            calls = (
                resources.GetResource(
                    resources_pb2.GetResourceRequest(
                        user_id=USER, device_id=DEVICE, resource="temperature"
                    ),
                    metadata=metadata,
                ),
                resources.DescribeResources(
                    resources_pb2.DescribeResourcesRequest(user_id=USER, device_id=DEVICE),
                    metadata=metadata,
                ),
                stats.GetDeviceStats(
                    stats_pb2.GetDeviceStatsRequest(user_id=USER, device_id=DEVICE),
                    metadata=metadata,
                ),
            )
            for call in calls:
                try:
                    await call
                    answers.append((grpc.StatusCode.OK, ""))
                except grpc.aio.AioRpcError as error:
                    answers.append((error.code(), error.details() or ""))
        return answers

    refusal = (grpc.StatusCode.UNAUTHENTICATED, LINK_TOKEN_REFUSED)
    assert world.run(lambda: codes(link_token)) == [refusal] * 3
    assert world.run(lambda: codes(callers)) == [
        (grpc.StatusCode.NOT_FOUND, f"device '{DEVICE}' is not connected"),
        (grpc.StatusCode.NOT_FOUND, f"device '{DEVICE}' is not connected"),
        (grpc.StatusCode.OK, ""),
    ]


def test_a_link_token_is_listed_and_deleting_it_revokes_it(world: LinkWorld) -> None:
    token_id, token = issue(world)

    async def list_then_delete() -> list[dict[str, object]]:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = devices_pb2_grpc.DeviceServiceStub(channel)
            listed = await stub.ListDeviceTokens(
                devices_pb2.ListDeviceTokensRequest(user_id=USER, device_id=DEVICE),
                metadata=login(world),
            )
            await stub.DeleteDeviceToken(
                devices_pb2.DeleteDeviceTokenRequest(
                    user_id=USER, device_id=DEVICE, token_id=token_id
                ),
                metadata=login(world),
            )
            return [dict(entry.struct_value) for entry in listed.values]

    assert isinstance(open_link(world, token), agent_pb2.ConnectResponse)
    assert world.run(list_then_delete) == [{"id": token_id, "name": "link", "token": token}]
    refused(open_link(world, token))


def test_an_agent_opens_its_link_with_a_link_token(world: LinkWorld) -> None:
    _id, token = issue(world)
    target = world.target

    async def scenario() -> tuple[int, str | None]:
        agent = Agent(
            lambda: grpc.aio.insecure_channel(target),
            user=USER,
            device=DEVICE,
            device_token=token,
            backoff=FAST,
        )
        task = await connected(agent)
        await stopped(task)
        return agent.connections, agent.link_secret

    assert world.run(scenario) == (1, None)


@pytest.mark.parametrize(("credentials", "token"), [("", ""), ("c", "t")])
def test_an_agent_takes_credentials_or_a_link_token(credentials: str, token: str) -> None:
    with pytest.raises(ValueError, match="credentials or a link token"):
        Agent(
            lambda: grpc.aio.insecure_channel("x:1"),
            user=USER,
            device=DEVICE,
            credentials=credentials,
            device_token=token,
        )


@pytest.mark.parametrize(
    "payload",
    [
        {"dev": DEVICE, "iat": 1, "jti": "0" * 24, "lnk": "yes", "usr": USER},
        {"dev": DEVICE, "iat": 1, "jti": "0" * 24, "lnk": 1, "usr": USER},
        {"dev": DEVICE, "iat": 1, "jti": "0" * 24, "lnk": False, "usr": USER},
        {"exp": 2**40, "iat": 1, "lnk": True, "usr": USER},
    ],
    ids=["string", "one", "false", "not-a-device-token"],
)
def test_a_link_claim_is_true_on_a_device_token_or_absent(payload: dict[str, object]) -> None:
    ring = KeyRing.generate()
    token = jwt.encode(
        payload, ring.current.secret, algorithm="HS256", headers={"kid": ring.current.kid}
    )
    with pytest.raises(Unauthenticated, match="invalid token"):
        TokenSigner(ring).verify(token, utc_now())


def test_deleting_a_link_token_ends_the_link_it_opened(world: LinkWorld) -> None:
    """Revoking a (say, leaked) link token ends the live link it opened, not only the next
    Hello; deleting another token of the device leaves the link alone."""
    token_id, token = issue(world)
    other_id, _other = issue(world)
    target = world.target

    async def delete(stub: devices_pb2_grpc.DeviceServiceStub, which: str) -> None:
        await stub.DeleteDeviceToken(
            devices_pb2.DeleteDeviceTokenRequest(user_id=USER, device_id=DEVICE, token_id=which),
            metadata=login(world),
        )

    async def scenario() -> tuple[bool, LinkRefused]:
        agent = Agent(
            lambda: grpc.aio.insecure_channel(target),
            user=USER,
            device=DEVICE,
            device_token=token,
            backoff=FAST,
        )
        task = await connected(agent)
        async with grpc.aio.insecure_channel(target) as channel:
            stub = devices_pb2_grpc.DeviceServiceStub(channel)
            await delete(stub, other_id)
            await asyncio.sleep(0.3)
            alive_after_other = not task.done()
            await delete(stub, token_id)
            with pytest.raises(LinkRefused) as info:
                await asyncio.wait_for(task, 10)
        return alive_after_other, info.value

    alive_after_other, ended = world.run(scenario)
    assert alive_after_other
    assert ended.code == grpc.StatusCode.FAILED_PRECONDITION
    assert ended.details == LINK_TOKEN_DELETED
