"""Thinger's "Access Device Resources" through the real Envoy, with a real agent on the link.

The stack is this module's own: a short default call deadline (so a slow device gives its
504 quickly) and an in-flight limit of 200 (so 200 calls fit on one link and the 201st does
not). The agent runs in-process on a side loop, connected through the gateway's port, with
the seed's resources (location, temperature, relay, rgb, command, io, reset) and a few more
for the failures.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from thingwire.resources.v1 import resources_pb2, resources_pb2_grpc

from device_agent.agent import Agent
from device_agent.backoff import Backoff
from device_agent.resources import from_value
from tests.integration.conftest import PASSWORD
from tests.integration.stack import Stack
from tests.link.conftest import connected, stopped
from tests.support import LoopThread

pytestmark = pytest.mark.integration

DEVICE = "nodemcu"
CREDENTIALS = "nodemcu-s3cret"
CALL_TIMEOUT_S = 5.0
MAX_IN_FLIGHT = 200
JSON = {"Content-Type": "application/json;charset=UTF-8"}
BASE = f"/v2/users/ada/devices/{DEVICE}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, db_url_factory: Any) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    running = Stack(
        workdir=workdir,
        db_url=db_url_factory(workdir),
        extra_env={
            "THINGWIRE_RESOURCE_CALL_TIMEOUT_S": str(CALL_TIMEOUT_S),
            "THINGWIRE_LINK_MAX_CALLS_IN_FLIGHT": str(MAX_IN_FLIGHT),
        },
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


class Gate:
    """A resource that holds every call until released, counting the calls it holds and
    noting the ones cancelled (the device's view of a Cancel)."""

    def __init__(self) -> None:
        self.held = 0
        self.started = 0
        self.cancelled = 0
        self.release: asyncio.Event | None = None
        self.all_in: asyncio.Event | None = None
        self.expected = 0

    async def __call__(self, value: object = None) -> object:
        assert self.release is not None
        self.started += 1
        self.held += 1
        if self.all_in is not None and self.held >= self.expected:
            self.all_in.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.held -= 1
        return value

    def arm(self, expected: int = 0) -> None:
        """Called on the agent's loop before each use."""
        self.release, self.all_in, self.expected = asyncio.Event(), asyncio.Event(), expected
        self.started = self.cancelled = 0


@dataclass
class Device:
    """The agent of `nodemcu`, on its own loop, and what its handlers saw."""

    loop: LoopThread
    agent: Agent
    seen: dict[str, object]
    gate: Gate

    def on_loop(self, work: Any, timeout: float = 30.0) -> Any:
        return self.loop.run(work, timeout)


def seed_agent(stack: Stack, seen: dict[str, object], gate: Gate) -> Agent:
    """The agent with the seed's resources, as its C++ examples define them."""
    target = stack.grpc_target
    agent = Agent(
        lambda: grpc.aio.insecure_channel(target),
        user="ada",
        device=DEVICE,
        credentials=CREDENTIALS,
        backoff=Backoff(base_s=0.05, cap_s=0.2),
    )

    @agent.output("location", description="where it is")
    def location() -> dict[str, float]:
        return {"latitude": 40.125698, "longitude": -5.466911}

    @agent.output("temperature", example=21.0)
    def temperature() -> float:
        return 21.0

    @agent.input("relay", example=True)
    def relay(on: bool) -> None:
        seen["relay"] = on

    @agent.input("rgb")
    def rgb(color: dict[str, int]) -> None:
        seen["rgb"] = color

    @agent.input("command")
    def command(text: str) -> None:
        seen["command"] = text

    @agent.io("io")
    def io(values: dict[str, float]) -> dict[str, float]:
        return {
            "sum": values["value1"] + values["value2"],
            "mult": values["value1"] * values["value2"],
        }

    @agent.run("reset")
    def reset() -> None:
        seen["reset"] = seen.get("reset", 0) + 1  # type: ignore[operator]

    @agent.io("echo")
    def echo(value: object) -> object:
        return value

    @agent.io("api")
    def api(value: object) -> object:
        return {"called": value}

    @agent.output("broken")
    def broken() -> None:
        raise OSError("sensor unplugged")

    # The bound method, so that the agent sees a coroutine function and awaits it.
    agent.output("gate")(gate.__call__)
    agent.io("gate_io")(gate.__call__)
    return agent


@pytest.fixture(scope="module")
def device(stack: Stack, ada: dict) -> Iterator[Device]:
    stack.cli("device", "create", "--user", "ada", "--device", DEVICE, "--credentials", CREDENTIALS)
    stack.cli("device", "create", "--user", "ada", "--device", "sleeper", "--credentials", "zz")
    loop = LoopThread()
    seen: dict[str, object] = {}
    gate = Gate()
    agent = seed_agent(stack, seen, gate)
    task = loop.run(lambda: connected(agent))
    try:
        yield Device(loop, agent, seen, gate)
    finally:
        loop.run(lambda: stopped(task))
        loop.close()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.http() as http:
        yield http


def thinger_login(client: httpx.Client, username: str) -> str:
    answer = client.post(
        "/oauth/token",
        content=f"grant_type=password&username={username}&password={PASSWORD}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


@pytest.fixture(scope="module")
def token(client: httpx.Client, ada: dict) -> str:
    return thinger_login(client, "ada")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(message: str) -> dict[str, object]:
    return {"error": {"message": message}}


# -- the seed's requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "body"),
    [
        ("location", {"out": {"latitude": 40.125698, "longitude": -5.466911}}),
        ("temperature", {"out": 21.0}),
        ("reset", {}),
    ],
)
def test_get_output_and_no_parameter_resources(
    client: httpx.Client, device: Device, token: str, resource: str, body: dict
) -> None:
    answer = client.get(f"{BASE}/{resource}", headers=auth(token))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == body


def test_the_reset_curl_runs_the_function_on_the_device(
    client: httpx.Client, device: Device, token: str
) -> None:
    before = device.seen.get("reset", 0)
    answer = client.get(f"{BASE}/reset", headers=auth(token))
    assert answer.status_code == 200
    assert device.seen["reset"] == before + 1  # type: ignore[operator]


@pytest.mark.parametrize(
    ("resource", "sent", "received"),
    [
        ("relay", b'{"in":true}', True),
        ("relay", b'{"in" : false}', False),
        ("rgb", b'{"in":{"r":0,"g":255,"b":0}}', {"r": 0, "g": 255, "b": 0}),
        ("command", b'{"in":"New customer: 101 today!"}', "New customer: 101 today!"),
        # The bare value, as the io curl example sends it.
        ("relay", b"true", True),
        ("rgb", b'{"r":1,"g":2,"b":3}', {"r": 1, "g": 2, "b": 3}),
        ("command", b'"bare text"', "bare text"),
    ],
)
def test_post_input_resources(
    client: httpx.Client, device: Device, token: str, resource: str, sent: bytes, received: object
) -> None:
    answer = client.post(f"{BASE}/{resource}", content=sent, headers={**JSON, **auth(token)})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}
    assert device.seen[resource] == received


@pytest.mark.parametrize(
    "sent", [b'{"in":{"value1":20,"value2":10}}', b'{"value1":20,"value2":10}'], ids=["in", "bare"]
)
def test_post_the_io_resource(
    client: httpx.Client, device: Device, token: str, sent: bytes
) -> None:
    answer = client.post(f"{BASE}/io", content=sent, headers={**JSON, **auth(token)})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"out": {"sum": 30, "mult": 200}}


def test_the_io_curl_without_a_json_content_type(
    client: httpx.Client, device: Device, token: str
) -> None:
    """curl -d sends application/x-www-form-urlencoded unless told otherwise."""
    answer = client.post(
        f"{BASE}/io",
        content=b'{"value1":20,"value2":10}',
        headers={"Content-Type": "application/x-www-form-urlencoded", **auth(token)},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"out": {"sum": 30, "mult": 200}}


@pytest.mark.parametrize(
    ("sent", "out"),
    [
        (b"21.5", 21.5),
        (b"1", 1),
        (b"[1,2]", [1, 2]),
        (b"null", None),
        (b'{"in":{"in":1}}', {"in": 1}),
    ],
)
def test_bare_json_values_reach_the_device(
    client: httpx.Client, device: Device, token: str, sent: bytes, out: object
) -> None:
    # A bare number is the case Envoy's transcoder would never finish parsing as a Value.
    answer = client.post(f"{BASE}/echo", content=sent, headers={**JSON, **auth(token)}, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"out": out}


def test_the_token_may_come_as_a_query_parameter_and_the_slash_is_optional(
    client: httpx.Client, device: Device, token: str
) -> None:
    answer = client.get(f"{BASE}/temperature/", params={"authorization": token})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"out": 21.0}


# -- the device's API description -------------------------------------------------------------


def test_the_api_path_describes_the_device(
    client: httpx.Client, device: Device, token: str
) -> None:
    answer = client.get(f"{BASE}/api", headers=auth(token))
    assert answer.status_code == 200, answer.text
    described = answer.json()
    assert described["temperature"] == {
        "fn": 3,
        "kind": "output",
        "description": "",
        "example": 21.0,
    }
    assert described["location"] == {"fn": 3, "kind": "output", "description": "where it is"}
    assert described["relay"] == {"fn": 2, "kind": "input", "description": "", "example": True}
    assert described["io"]["fn"] == 4
    assert described["reset"] == {"fn": 1, "kind": "none", "description": ""}
    assert {"location", "temperature", "relay", "rgb", "command", "io", "reset"} <= set(described)


def test_a_resource_named_api_is_shadowed_for_get_but_not_for_post(
    client: httpx.Client, device: Device, token: str
) -> None:
    described = client.get(f"{BASE}/api", headers=auth(token))
    assert "api" in described.json()  # the description, not the resource's answer
    called = client.post(f"{BASE}/api", content=b'{"in":7}', headers={**JSON, **auth(token)})
    assert called.status_code == 200, called.text
    assert called.json() == {"out": {"called": 7}}


# -- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        (
            "GET",
            "/v2/users/ada/devices/sleeper/temperature",
            None,
            404,
            "device 'sleeper' is not connected",
        ),
        (
            "GET",
            "/v2/users/ada/devices/nothing/temperature",
            None,
            404,
            "device 'nothing' is not connected",
        ),
        (
            "GET",
            "/v2/users/ada/devices/sleeper/api",
            None,
            404,
            "device 'sleeper' is not connected",
        ),
        ("GET", f"{BASE}/humidity", None, 404, "resource 'humidity' not found"),
        ("POST", f"{BASE}/humidity", b"1", 404, "resource 'humidity' not found"),
        ("GET", f"{BASE}/broken", None, 400, "the device reported an error: sensor unplugged"),
        ("GET", f"{BASE}/relay", None, 400, "resource 'relay' takes an input value"),
        ("POST", f"{BASE}/relay", None, 400, "resource 'relay' takes an input value"),
        (
            "POST",
            f"{BASE}/temperature",
            b'{"in":1}',
            400,
            "resource 'temperature' takes no input value",
        ),
    ],
)
def test_failures_have_thingers_error_body(
    client: httpx.Client,
    device: Device,
    token: str,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    message: str,
) -> None:
    answer = client.request(method, path, content=body, headers={**JSON, **auth(token)})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == error(message)
    assert not any(h.startswith("grpc-") for h in answer.headers)


def test_the_agent_keeps_running_after_a_handler_error(
    client: httpx.Client, device: Device, token: str
) -> None:
    assert client.get(f"{BASE}/broken", headers=auth(token)).status_code == 400
    assert client.get(f"{BASE}/temperature", headers=auth(token)).json() == {"out": 21.0}


def test_malformed_json_is_a_400(client: httpx.Client, device: Device, token: str) -> None:
    answer = client.post(f"{BASE}/io", content=b'{"value1":20,', headers={**JSON, **auth(token)})
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert message.startswith("the body is not valid JSON: ")


def test_a_slow_device_gives_504_after_the_default_deadline(
    client: httpx.Client, device: Device, token: str
) -> None:
    device.on_loop(lambda: _arm(device.gate))
    begun = time.monotonic()
    answer = client.get(f"{BASE}/gate", headers=auth(token), timeout=30)
    waited = time.monotonic() - begun
    device.on_loop(lambda: _until(lambda: device.gate.cancelled == 1))  # told to stop
    device.on_loop(lambda: _release(device.gate))
    assert answer.status_code == 504, answer.text
    assert answer.json() == error(f"device '{DEVICE}' did not answer in time")
    assert CALL_TIMEOUT_S - 0.5 < waited < CALL_TIMEOUT_S + 3


def test_a_rest_client_that_goes_away_cancels_the_call_on_the_device(
    stack: Stack, device: Device, token: str
) -> None:
    device.on_loop(lambda: _arm(device.gate, expected=1))
    begun = time.monotonic()
    with (
        httpx.Client(base_url=stack.base_url, timeout=1.0) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.get(f"{BASE}/gate", headers=auth(token))
    # The client closed its connection after 1 s; the device must see the Cancel long
    # before the call's own deadline (5 s) would have stopped it.
    device.on_loop(lambda: _until(lambda: device.gate.cancelled == 1), timeout=10)
    cancelled_after = time.monotonic() - begun
    device.on_loop(lambda: _release(device.gate))
    assert cancelled_after < CALL_TIMEOUT_S - 1.5
    assert device.agent.connected.is_set()  # a Cancel, not a lost link
    assert device.agent.connections == 1


def test_a_device_that_drops_mid_call_gives_503_at_once(
    stack: Stack, client: httpx.Client, token: str, ada: dict
) -> None:
    stack.cli("device", "create", "--user", "ada", "--device", "dropper", "--credentials", "dd")
    loop = LoopThread()
    target = stack.grpc_target
    agent = Agent(
        lambda: grpc.aio.insecure_channel(target), user="ada", device="dropper", credentials="dd"
    )
    started = threading.Event()

    @agent.output("wait")
    async def wait() -> None:
        started.set()
        await asyncio.Event().wait()

    task = loop.run(lambda: connected(agent))
    try:
        with ThreadPoolExecutor(1) as pool:
            pending: Future[httpx.Response] = pool.submit(
                client.get, "/v2/users/ada/devices/dropper/wait", headers=auth(token)
            )
            assert started.wait(10)
            begun = time.monotonic()
            loop.run(lambda: stopped(task))
            answer = pending.result(30)
            waited = time.monotonic() - begun
    finally:
        loop.close()
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["message"].startswith("device disconnected")
    assert waited < 3.0  # at once, not after the 5 s deadline


def test_two_hundred_concurrent_calls_over_one_link(
    stack: Stack, device: Device, token: str
) -> None:
    """Every call is held on the device until all 200 are there: all in flight at once."""
    device.on_loop(lambda: _arm(device.gate, expected=MAX_IN_FLIGHT))

    async def release_when_all_in() -> None:
        assert device.gate.all_in is not None
        await device.gate.all_in.wait()
        _release_now(device.gate)

    releaser = asyncio.run_coroutine_threadsafe(release_when_all_in(), device.loop.loop)
    answers = asyncio.run(_concurrent_posts(stack, token, range(MAX_IN_FLIGHT)))
    releaser.result(5)
    assert [a.status_code for a in answers] == [200] * MAX_IN_FLIGHT
    assert [a.json() for a in answers] == [{"out": i} for i in range(MAX_IN_FLIGHT)]
    assert device.gate.started == MAX_IN_FLIGHT


def test_past_the_in_flight_limit_a_call_gets_429_at_once(
    stack: Stack, client: httpx.Client, device: Device, token: str
) -> None:
    device.on_loop(lambda: _arm(device.gate, expected=MAX_IN_FLIGHT))

    async def scenario() -> tuple[httpx.Response, float, list[httpx.Response]]:
        fillers = asyncio.create_task(_concurrent_posts(stack, token, range(MAX_IN_FLIGHT)))
        all_in = asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(_all_in(device.gate), device.loop.loop)
        )
        await asyncio.wait_for(all_in, CALL_TIMEOUT_S - 1)
        begun = time.monotonic()
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
            throttled = await http.get(f"{BASE}/temperature", headers=auth(token))
        waited = time.monotonic() - begun
        device.on_loop(lambda: _release(device.gate))
        return throttled, waited, await fillers

    throttled, waited, fillers = asyncio.run(scenario())
    assert throttled.status_code == 429, throttled.text
    assert throttled.headers["retry-after"] == "1"
    assert throttled.json() == error(f"device '{DEVICE}' has {MAX_IN_FLIGHT} calls in flight")
    assert waited < 1.0
    assert [f.status_code for f in fillers] == [200] * MAX_IN_FLIGHT  # undisturbed


# -- who may call -------------------------------------------------------------------------


def test_another_user_gets_401_whether_or_not_the_device_exists(
    client: httpx.Client, device: Device, bob: dict
) -> None:
    bobs = auth(thinger_login(client, "bob"))
    for path in (f"{BASE}/temperature", "/v2/users/ada/devices/nothing/temperature", f"{BASE}/api"):
        answer = client.get(path, headers=bobs)
        assert answer.status_code == 401, path
        assert answer.json() == error("not authorized for user 'ada'")
    posted = client.post(f"{BASE}/relay", content=b'{"in":true}', headers={**JSON, **bobs})
    assert posted.status_code == 401
    own = client.get(f"/v2/users/bob/devices/{DEVICE}/temperature", headers=bobs)
    assert own.status_code == 404  # bob has no such device connected; ada's is not his


def test_no_or_a_bad_token_is_401(client: httpx.Client, device: Device) -> None:
    assert client.get(f"{BASE}/temperature").status_code == 401
    bad = client.get(f"{BASE}/temperature", headers=auth("not-a-token"))
    assert bad.status_code == 401
    assert set(bad.json()) == {"error"}


def scoped_token(client: httpx.Client, token: str, permissions: list[dict]) -> dict[str, str]:
    created = client.post(
        "/v1/users/ada/tokens",
        json={"token_name": f"scoped {time.monotonic_ns()}", "token_permissions": permissions},
        headers=auth(token),
    )
    assert created.status_code in (200, 201), created.text
    return auth(created.json()["token"])


def test_a_token_for_another_device_is_refused_alike_for_any_device(
    client: httpx.Client, device: Device, token: str
) -> None:
    other = scoped_token(client, token, [{"device": "sleeper"}])
    for name in (DEVICE, "nothing"):
        answer = client.get(f"/v2/users/ada/devices/{name}/temperature", headers=other)
        assert answer.status_code == 401
        assert answer.json() == error(f"not authorized for device '{name}'")
    assert client.get(f"{BASE}/api", headers=other).status_code == 401


def test_a_token_for_one_resource_calls_and_sees_only_that_one(
    client: httpx.Client, device: Device, token: str
) -> None:
    relay_only = scoped_token(client, token, [{"device": DEVICE, "resources": ["relay"]}])
    refused = client.get(f"{BASE}/temperature", headers=relay_only)
    assert refused.status_code == 401
    assert refused.json() == error(f"not authorized for device '{DEVICE}'")
    allowed = client.post(f"{BASE}/relay", content=b'{"in":true}', headers={**JSON, **relay_only})
    assert allowed.status_code == 200, allowed.text
    described = client.get(f"{BASE}/api", headers=relay_only)
    assert described.status_code == 200
    assert list(described.json()) == ["relay"]


# -- gRPC through the gateway -------------------------------------------------------------


def test_grpc_callers_use_the_generated_stubs(stack: Stack, device: Device, token: str) -> None:
    async def scenario() -> tuple[object, object, list[str]]:
        metadata = (("authorization", f"Bearer {token}"),)
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            stub = resources_pb2_grpc.ResourceServiceStub(channel)
            temperature = await stub.GetResource(
                resources_pb2.GetResourceRequest(
                    user_id="ada", device_id=DEVICE, resource="temperature"
                ),
                metadata=metadata,
                timeout=10,
            )
            request = resources_pb2.CallResourceRequest(
                user_id="ada", device_id=DEVICE, resource="io"
            )
            request.input.struct_value.update({"value1": 2, "value2": 3})
            io = await stub.CallResource(request, metadata=metadata, timeout=10)
            described = await stub.DescribeResources(
                resources_pb2.DescribeResourcesRequest(user_id="ada", device_id=DEVICE),
                metadata=metadata,
                timeout=10,
            )
        return from_value(temperature.out), from_value(io.out), sorted(described.fields)

    temperature, io, described = asyncio.run(scenario())
    assert temperature == 21.0
    assert io == {"sum": 5, "mult": 6}
    assert "location" in described


def test_a_grpc_callers_short_deadline_wins_and_cancels_on_the_device(
    stack: Stack, device: Device, token: str
) -> None:
    device.on_loop(lambda: _arm(device.gate))

    async def scenario() -> tuple[grpc.StatusCode, float]:
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            stub = resources_pb2_grpc.ResourceServiceStub(channel)
            begun = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetResource(
                    resources_pb2.GetResourceRequest(
                        user_id="ada", device_id=DEVICE, resource="gate"
                    ),
                    metadata=(("authorization", f"Bearer {token}"),),
                    timeout=0.5,
                )
            return info.value.code(), time.monotonic() - begun

    code, waited = asyncio.run(scenario())
    device.on_loop(lambda: _until(lambda: device.gate.cancelled == 1), timeout=10)
    device.on_loop(lambda: _release(device.gate))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert waited < 2.0


# -- helpers that run on the agent's loop ---------------------------------------------------


async def _arm(gate: Gate, expected: int = 0) -> None:
    gate.arm(expected)


async def _release(gate: Gate) -> None:
    _release_now(gate)


def _release_now(gate: Gate) -> None:
    assert gate.release is not None
    gate.release.set()


async def _all_in(gate: Gate) -> None:
    assert gate.all_in is not None
    await gate.all_in.wait()


async def _until(condition: Any) -> None:
    """Wait until the handler's counters satisfy `condition` (at most 10 s)."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the handler's counters are plain ints
            await asyncio.sleep(0.01)


async def _concurrent_posts(stack: Stack, token: str, values: range) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(values) + 10)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30, limits=limits) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post(
                        f"{BASE}/gate_io",
                        content=str(i).encode(),
                        headers={**JSON, **auth(token)},
                    )
                    for i in values
                )
            )
        )
