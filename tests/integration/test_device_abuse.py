"""Devices that misbehave, through the real Envoy: what they answer must neither hurt other
users' devices nor reach a caller as a gateway error.

The stack is this module's own. Two users each have a device connected through the
gateway's port, on one side loop: ada's device answers badly on purpose, bob's is the
bystander whose link must survive it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from device_agent.agent import Agent
from device_agent.backoff import Backoff
from server.interceptors import MAX_MESSAGE_CHARS
from tests.integration.conftest import PASSWORD
from tests.integration.stack import Stack
from tests.link.conftest import connected, stopped
from tests.support import LoopThread

pytestmark = pytest.mark.integration

#: A handler error far past any header limit of the gateway (Envoy's is 60 KiB).
HUGE_ERROR = "e" * (1 << 20)


@dataclass
class Devices:
    """ada's misbehaving device and bob's bystander, on one side loop."""

    loop: LoopThread
    bystander: Agent


def agent_of(stack: Stack, user: str, device: str, credentials: str) -> Agent:
    target = stack.grpc_target
    return Agent(
        lambda: grpc.aio.insecure_channel(target),
        user=user,
        device=device,
        credentials=credentials,
        backoff=Backoff(base_s=0.05, cap_s=0.2),
    )


@pytest.fixture(scope="module")
def devices(stack: Stack, ada: dict, bob: dict) -> Iterator[Devices]:
    stack.cli("device", "create", "--user", "ada", "--device", "rogue", "--credentials", "r0gue")
    stack.cli("device", "create", "--user", "bob", "--device", "calm", "--credentials", "ca1m")
    rogue = agent_of(stack, "ada", "rogue", "r0gue")

    @rogue.output("shout")
    def shout() -> None:
        raise ValueError(HUGE_ERROR)

    @rogue.output("nan")
    def nan() -> float:
        return float("nan")

    @rogue.output("infinite")
    def infinite() -> dict[str, object]:
        return {"deep": [1.0, float("-inf")]}

    bystander = agent_of(stack, "bob", "calm", "ca1m")

    @bystander.output("ok")
    def ok() -> float:
        return 1.0

    loop = LoopThread()
    tasks = [loop.run(lambda a=a: connected(a)) for a in (rogue, bystander)]  # type: ignore[misc]
    try:
        yield Devices(loop, bystander)
    finally:
        for task in tasks:
            loop.run(lambda t=task: stopped(t))  # type: ignore[misc]
        loop.close()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.http() as http:
        yield http


def bearer(client: httpx.Client, username: str) -> dict[str, str]:
    answer = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": username, "password": PASSWORD},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def connected_ts(client: httpx.Client, headers: dict[str, str]) -> Any:
    answer = client.get("/v1/users/bob/devices/calm/stats", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["connected"] is True
    return answer.json()["connected_ts"]


def test_a_huge_device_error_is_cut_and_other_links_survive(
    client: httpx.Client, devices: Devices
) -> None:
    ada, bob = bearer(client, "ada"), bearer(client, "bob")
    before = connected_ts(client, bob)
    answer = client.get("/v2/users/ada/devices/rogue/shout", headers=ada)
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    assert message.startswith("the device reported an error: eee")
    assert len(message) == MAX_MESSAGE_CHARS
    assert not any(name.startswith("grpc-") for name in answer.headers)
    # bob's link shared Envoy's upstream connection: it is the same link, still answering.
    assert connected_ts(client, bob) == before
    assert client.get("/v2/users/bob/devices/calm/ok", headers=bob).json() == {"out": 1.0}


@pytest.mark.parametrize("resource", ["nan", "infinite"])
def test_a_value_json_cannot_carry_is_the_devices_error_not_a_gateway_error(
    client: httpx.Client, devices: Devices, resource: str
) -> None:
    answer = client.get(f"/v2/users/ada/devices/rogue/{resource}", headers=bearer(client, "ada"))
    assert answer.status_code == 400, answer.text
    assert answer.json() == {
        "error": {
            "message": "the device reported an error: its answer is not JSON (NaN or infinity)"
        }
    }
