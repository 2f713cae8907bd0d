"""Thinger's "Access Device Resources" through the real Envoy, with real agent processes.

The stack is this module's own: a short default call deadline (so a slow device gives its
504 quickly) and an in-flight limit of 200 (so 200 calls fit on one link and the 201st does
not). `nodemcu` is `thingwire agent --simulate` (the seed's resources: location, temperature,
relay, rgb, command, io, reset); `tester` runs the same command with the test resources of
`tests/integration/agent_process.py` (`echo`, `api`, `open`, `close`, `hold`). What a device
saw is read from its log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import pytest
from thingwire.resources.v1 import resources_pb2, resources_pb2_grpc

from device_agent.resources import from_value
from device_agent.simulated import COLDEST, HOME, HOTTEST
from tests.integration.agents import AgentProcess
from tests.integration.stack import Stack, read_frames, stack_fixture

pytestmark = pytest.mark.integration

DEVICE = "nodemcu"
CREDENTIALS = "nodemcu-s3cret"
CALL_TIMEOUT_S = 5.0
MAX_IN_FLIGHT = 200
#: Envoy's default route timeout, which must not apply to a device link.
ENVOY_DEFAULT_ROUTE_TIMEOUT_S = 15.0
JSON = {"Content-Type": "application/json;charset=UTF-8"}
BASE = f"/v2/users/ada/devices/{DEVICE}"
TESTER = "/v2/users/ada/devices/tester"


stack = stack_fixture(
    THINGWIRE_RESOURCE_CALL_TIMEOUT_S=str(CALL_TIMEOUT_S),
    THINGWIRE_LINK_MAX_CALLS_IN_FLIGHT=str(MAX_IN_FLIGHT),
)


def linked_agent(stack: Stack, device: str, **options: Any) -> AgentProcess:
    """A new device of ada's with its agent process started and linked."""
    stack.cli(
        "device", "create", "--user", "ada", "--device", device, "--credentials", f"{device}-c"
    )
    agent = AgentProcess(stack, "ada", device, f"{device}-c", **options).start()
    agent.wait_connected()
    return agent


@pytest.fixture(scope="module")
def device(stack: Stack, ada: dict) -> Iterator[AgentProcess]:
    """`thingwire agent --simulate` as `nodemcu`; `sleeper` exists but never connects."""
    stack.cli("device", "create", "--user", "ada", "--device", DEVICE, "--credentials", CREDENTIALS)
    stack.cli("device", "create", "--user", "ada", "--device", "sleeper", "--credentials", "zz")
    with AgentProcess(stack, "ada", DEVICE, CREDENTIALS, simulate=True) as agent:
        agent.wait_connected()
        yield agent


@pytest.fixture(scope="module")
def tester(stack: Stack, ada: dict) -> Iterator[AgentProcess]:
    """The agent with the test resources, as `tester`."""
    with linked_agent(stack, "tester", test_resources=True) as agent:
        yield agent


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.http() as http:
        yield http


@pytest.fixture(scope="module")
def token(stack: Stack, ada: dict) -> str:
    return stack.thinger_token("ada")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(message: str) -> dict[str, object]:
    return {"error": {"message": message}}


def seen_after(agent: AgentProcess, line: str, call: Any) -> Any:
    """`call()`'s answer, once the agent's log holds `line` once more than before."""
    before = agent.log().count(line)
    answer = call()
    agent.wait_for(line, count=before + 1, timeout=5)
    return answer


# -- the seed's requests --------------------------------------------------------------------


def test_get_the_location_output(client: httpx.Client, device: AgentProcess, token: str) -> None:
    answer = client.get(f"{BASE}/location", headers=auth(token))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    (out,) = answer.json().values()
    assert set(answer.json()) == {"out"}
    assert set(out) == {"lat", "lon"}
    assert abs(out["lat"] - HOME["lat"]) < 0.01
    assert abs(out["lon"] - HOME["lon"]) < 0.01


def test_get_the_temperature_output(client: httpx.Client, device: AgentProcess, token: str) -> None:
    answer = client.get(f"{BASE}/temperature", headers=auth(token))
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"out"}
    assert COLDEST <= answer.json()["out"] <= HOTTEST


def test_the_reset_curl_runs_the_function_on_the_device(
    client: httpx.Client, device: AgentProcess, token: str
) -> None:
    answer = seen_after(device, "reset (", lambda: client.get(f"{BASE}/reset", headers=auth(token)))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}


@pytest.mark.parametrize(
    ("resource", "sent", "logged"),
    [
        ("relay", b'{"in":true}', "relay on"),
        ("relay", b'{"in" : false}', "relay off"),
        ("rgb", b'{"in":{"r":0,"g":255,"b":0}}', "rgb set to {'r': 0, 'g': 255, 'b': 0}"),
        (
            "command",
            b'{"in":"New customer: 101 today!"}',
            "command received: New customer: 101 today!",
        ),
        # The bare value, as the io curl example sends it.
        ("relay", b"true", "relay on"),
        ("rgb", b'{"r":1,"g":2,"b":3}', "rgb set to {'r': 1, 'g': 2, 'b': 3}"),
        ("command", b'"bare text"', "command received: bare text"),
    ],
)
def test_post_input_resources(
    client: httpx.Client,
    device: AgentProcess,
    token: str,
    resource: str,
    sent: bytes,
    logged: str,
) -> None:
    answer = seen_after(
        device,
        logged,
        lambda: client.post(f"{BASE}/{resource}", content=sent, headers={**JSON, **auth(token)}),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}


@pytest.mark.parametrize(
    "sent", [b'{"in":{"value1":20,"value2":10}}', b'{"value1":20,"value2":10}'], ids=["in", "bare"]
)
def test_post_the_io_resource(
    client: httpx.Client, device: AgentProcess, token: str, sent: bytes
) -> None:
    answer = client.post(f"{BASE}/io", content=sent, headers={**JSON, **auth(token)})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"out": {"sum": 30, "mult": 200}}


def test_the_io_curl_without_a_json_content_type(
    client: httpx.Client, device: AgentProcess, token: str
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
    client: httpx.Client, tester: AgentProcess, token: str, sent: bytes, out: object
) -> None:
    # A bare number is the case Envoy's transcoder would never finish parsing as a Value.
    answer = client.post(f"{TESTER}/echo", content=sent, headers={**JSON, **auth(token)}, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"out": out}


def test_the_token_may_come_as_a_query_parameter_and_the_slash_is_optional(
    client: httpx.Client, device: AgentProcess, token: str
) -> None:
    answer = client.get(f"{BASE}/temperature/", params={"authorization": token})
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"out"}


# -- the device's API description -------------------------------------------------------------


def test_the_api_path_describes_the_device(
    client: httpx.Client, device: AgentProcess, token: str
) -> None:
    answer = client.get(f"{BASE}/api", headers=auth(token))
    assert answer.status_code == 200, answer.text
    described = answer.json()
    assert set(described) == {
        "location", "temperature", "relay", "rgb", "command", "io", "reset",
        "obd",  # the simulated vehicle's readings (docs/vehicle.md)
    }  # fmt: skip
    assert described["temperature"] == {
        "fn": 3,
        "kind": "output",
        "description": "degrees Celsius",
        "example": 21.0,
    }
    assert described["location"]["example"] == HOME
    assert described["relay"] == {
        "fn": 2,
        "kind": "input",
        "description": "switches the relay on (true) or off (false)",
        "example": True,
    }
    assert described["io"]["fn"] == 4
    assert described["reset"] == {
        "fn": 1,
        "kind": "none",
        "description": "puts the device back in its first state",
    }


def test_a_resource_named_api_is_shadowed_for_get_but_not_for_post(
    client: httpx.Client, tester: AgentProcess, token: str
) -> None:
    described = client.get(f"{TESTER}/api", headers=auth(token))
    assert "api" in described.json()  # the description, not the resource's answer
    called = client.post(f"{TESTER}/api", content=b'{"in":7}', headers={**JSON, **auth(token)})
    assert called.status_code == 200, called.text
    assert called.json() == {"out": {"called": 7}}


# -- failures -----------------------------------------------------------------------------

BAD_IO = b'{"value1":"20","value2":10}'
BAD_IO_MESSAGE = 'the device reported an error: io value1 must be a number, not "20"'


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
        ("POST", f"{BASE}/io", BAD_IO, 400, BAD_IO_MESSAGE),
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
    device: AgentProcess,
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
    client: httpx.Client, device: AgentProcess, token: str
) -> None:
    links = device.connections()
    refused = seen_after(
        device,
        "resource 'io' failed",
        lambda: client.post(f"{BASE}/io", content=BAD_IO, headers={**JSON, **auth(token)}),
    )
    assert refused.status_code == 400
    also_refused = client.post(f"{BASE}/io", content=b"[1]", headers={**JSON, **auth(token)})
    assert also_refused.status_code == 400  # its own refusal: the handler checks every input
    ok = client.post(f"{BASE}/io", content=b'{"in":{"value1":2,"value2":3}}', headers=auth(token))
    assert ok.json() == {"out": {"sum": 5, "mult": 6}}
    assert device.process is not None
    assert device.process.poll() is None
    assert device.connections() == links  # the same link carried on


def test_malformed_json_is_a_400(client: httpx.Client, device: AgentProcess, token: str) -> None:
    answer = client.post(f"{BASE}/io", content=b'{"value1":20,', headers={**JSON, **auth(token)})
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert message.startswith("the body is not valid JSON: ")


def test_a_slow_device_gives_504_after_the_default_deadline(
    client: httpx.Client, tester: AgentProcess, token: str
) -> None:
    begun = time.monotonic()
    answer = seen_after(
        tester,
        "hold cancelled",  # the device was told to stop
        lambda: client.post(f"{TESTER}/hold", content=b"1", headers=auth(token), timeout=30),
    )
    waited = time.monotonic() - begun
    assert answer.status_code == 504, answer.text
    assert answer.json() == error("device 'tester' did not answer in time")
    assert CALL_TIMEOUT_S - 0.5 < waited < CALL_TIMEOUT_S + 3


def test_a_rest_client_that_goes_away_cancels_the_call_on_the_device(
    stack: Stack, tester: AgentProcess, token: str
) -> None:
    cancelled = tester.log().count("hold cancelled")
    links = tester.connections()
    begun = time.monotonic()
    with (
        httpx.Client(base_url=stack.base_url, timeout=1.0) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post(f"{TESTER}/hold", content=b"1", headers=auth(token))
    # The client closed its connection after 1 s; the device must see the Cancel long
    # before the call's own deadline (5 s) would have stopped it.
    tester.wait_for("hold cancelled", count=cancelled + 1, timeout=10)
    assert time.monotonic() - begun < CALL_TIMEOUT_S - 1.5
    assert tester.connections() == links  # a Cancel, not a lost link


def test_an_agent_killed_mid_call_gives_503_at_once(
    stack: Stack, client: httpx.Client, token: str, ada: dict
) -> None:
    with (
        linked_agent(stack, "dropper", test_resources=True) as dropper,
        ThreadPoolExecutor(1) as pool,
    ):
        pending: Future[httpx.Response] = pool.submit(
            client.post, "/v2/users/ada/devices/dropper/hold", content=b"1", headers=auth(token)
        )
        dropper.wait_for("holding 1 calls", timeout=10)
        begun = time.monotonic()
        dropper.kill()  # SIGKILL: no goodbye; its kernel closes the connection
        answer = pending.result(30)
        waited = time.monotonic() - begun
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["message"].startswith("device disconnected")
    assert waited < 3.0  # at once, not after the 5 s deadline


def test_two_hundred_calls_in_flight_on_one_link_and_the_next_gets_429_at_once(
    stack: Stack, tester: AgentProcess, token: str
) -> None:
    """All 200 are held on the device at the same time; the 201st is refused at once and
    the 200 are undisturbed; released, each caller gets its own answer."""
    held = tester.log().count(f"holding {MAX_IN_FLIGHT} calls")

    async def scenario() -> tuple[httpx.Response, float, list[httpx.Response]]:
        fillers = asyncio.create_task(_concurrent_holds(stack, token, range(MAX_IN_FLIGHT)))
        await asyncio.to_thread(
            tester.wait_for, f"holding {MAX_IN_FLIGHT} calls", held + 1, CALL_TIMEOUT_S - 1
        )
        begun = time.monotonic()
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
            throttled = await http.post(f"{TESTER}/echo", content=b"1", headers=auth(token))
        waited = time.monotonic() - begun
        tester.release()
        return throttled, waited, await fillers

    throttled, waited, fillers = asyncio.run(scenario())
    assert throttled.status_code == 429, throttled.text
    assert throttled.headers["retry-after"] == "1"
    assert throttled.json() == error(f"device 'tester' has {MAX_IN_FLIGHT} calls in flight")
    assert waited < 1.0
    assert [f.status_code for f in fillers] == [200] * MAX_IN_FLIGHT
    assert [f.json() for f in fillers] == [{"out": i} for i in range(MAX_IN_FLIGHT)]


async def _concurrent_holds(stack: Stack, token: str, values: range) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(values) + 10)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30, limits=limits) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post(f"{TESTER}/hold", content=str(i).encode(), headers=auth(token))
                    for i in values
                )
            )
        )


def test_a_link_quiet_past_envoys_default_timeouts_stays_up_and_answers(
    stack: Stack, device: AgentProcess, token: str
) -> None:
    """Nothing on the link, nor on an event stream of its figures, for longer than Envoy's
    default route timeout (15 s) with the default keepalive: the same link answers, and the
    event stream, still open, shows the call's bytes."""
    links = device.connections()
    url = f"{stack.base_url}/v1/users/ada/devices/{DEVICE}/stats?authorization={token}"
    with (
        httpx.Client(timeout=httpx.Timeout(30)) as http,
        http.stream("GET", url, headers={"Accept": "text/event-stream"}) as events,
    ):
        lines = events.iter_lines()
        (before,) = read_frames(lines, 1)
        time.sleep(ENVOY_DEFAULT_ROUTE_TIMEOUT_S + 1)
        answer = http.get(f"{stack.base_url}{BASE}/temperature", headers=auth(token))
        assert answer.status_code == 200, answer.text
        frame = before
        while frame["rx_bytes"] == before["rx_bytes"]:
            (frame,) = read_frames(lines, 1)
    assert device.connections() == links  # never cut, never replaced
    assert frame["connected"] is True


# -- who may call -------------------------------------------------------------------------


def test_another_user_gets_401_whether_or_not_the_device_exists(
    stack: Stack, client: httpx.Client, device: AgentProcess, bob: dict
) -> None:
    bobs = auth(stack.thinger_token("bob"))
    for path in (f"{BASE}/temperature", "/v2/users/ada/devices/nothing/temperature", f"{BASE}/api"):
        answer = client.get(path, headers=bobs)
        assert answer.status_code == 401, path
        assert answer.json() == error("not authorized for user 'ada'")
    posted = client.post(f"{BASE}/relay", content=b'{"in":true}', headers={**JSON, **bobs})
    assert posted.status_code == 401
    own = client.get(f"/v2/users/bob/devices/{DEVICE}/temperature", headers=bobs)
    assert own.status_code == 404  # bob has no such device connected; ada's is not his
    assert own.json() == error(f"device '{DEVICE}' is not connected")  # as for a missing one


def test_no_or_a_bad_token_is_401(client: httpx.Client, device: AgentProcess) -> None:
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
    client: httpx.Client, device: AgentProcess, token: str
) -> None:
    other = scoped_token(client, token, [{"device": "sleeper"}])
    for name in (DEVICE, "nothing"):
        answer = client.get(f"/v2/users/ada/devices/{name}/temperature", headers=other)
        assert answer.status_code == 401
        assert answer.json() == error(f"not authorized for device '{name}'")
    assert client.get(f"{BASE}/api", headers=other).status_code == 401


def test_a_token_for_one_resource_calls_and_sees_only_that_one(
    client: httpx.Client, device: AgentProcess, token: str
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


# -- device tokens ------------------------------------------------------------------------


def test_a_device_token_limited_to_open_calls_open_and_nothing_else(
    stack: Stack, client: httpx.Client, tester: AgentProcess, token: str
) -> None:
    door = stack.device_token(token, "tester", token_resources=["open"])["token"]
    opened = seen_after(
        tester, "door opened", lambda: client.get(f"{TESTER}/open", headers=auth(door))
    )
    assert opened.status_code == 200, opened.text
    assert opened.json() == {}
    as_query = client.get(f"{TESTER}/open", params={"authorization": door})
    assert as_query.status_code == 200, as_query.text
    for answer in (
        client.get(f"{TESTER}/close", headers=auth(door)),
        client.post(f"{TESTER}/echo", content=b"1", headers=auth(door)),
        client.get(f"{TESTER}/humidity", headers=auth(door)),  # not declared: no hint of it
    ):
        assert answer.status_code == 401, answer.request.url
        assert answer.json() == error("not authorized for device 'tester'")
    described = client.get(f"{TESTER}/api", headers=auth(door))
    assert described.status_code == 200
    assert list(described.json()) == ["open"]


def test_a_device_token_reaches_only_its_own_device_and_user(
    stack: Stack, client: httpx.Client, device: AgentProcess, tester: AgentProcess, token: str
) -> None:
    testers = auth(stack.device_token(token, "tester")["token"])
    assert client.post(f"{TESTER}/echo", content=b"1", headers=testers).json() == {"out": 1}
    for name in (DEVICE, "nothing"):  # another device of the same user, or none
        answer = client.get(f"/v2/users/ada/devices/{name}/temperature", headers=testers)
        assert answer.status_code == 401
        assert answer.json() == error(f"not authorized for device '{name}'")
    bobs_path = client.post("/v2/users/bob/devices/tester/echo", content=b"1", headers=testers)
    assert bobs_path.status_code == 401
    assert bobs_path.json() == error("not authorized for user 'bob'")


def test_a_deleted_device_token_stops_at_once(
    stack: Stack, client: httpx.Client, tester: AgentProcess, token: str
) -> None:
    created = stack.device_token(token, "tester")
    used = auth(created["token"])
    assert client.post(f"{TESTER}/echo", content=b"1", headers=used).status_code == 200
    removed = client.delete(
        f"/v1/users/ada/devices/tester/tokens/{created['id']}", headers=auth(token)
    )
    assert removed.status_code == 200
    answer = client.post(f"{TESTER}/echo", content=b"1", headers=used)
    assert answer.status_code == 401
    assert set(answer.json()) == {"error"}


def test_an_expired_device_token_is_refused(
    stack: Stack, client: httpx.Client, tester: AgentProcess, token: str
) -> None:
    expires_ms = int(time.time() * 1000) + 1500
    used = auth(stack.device_token(token, "tester", token_expiration=expires_ms)["token"])
    assert client.post(f"{TESTER}/echo", content=b"1", headers=used).status_code == 200
    time.sleep(max(0.0, expires_ms / 1000 - time.time()) + 1.1)  # JWT expiry is in seconds
    answer = client.post(f"{TESTER}/echo", content=b"1", headers=used)
    assert answer.status_code == 401
    assert set(answer.json()) == {"error"}


# -- gRPC through the gateway -------------------------------------------------------------


def test_grpc_callers_use_the_generated_stubs(
    stack: Stack, device: AgentProcess, token: str
) -> None:
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
    assert isinstance(temperature, float)
    assert COLDEST <= temperature <= HOTTEST
    assert io == {"sum": 5, "mult": 6}
    assert "location" in described


def test_a_grpc_callers_short_deadline_wins_and_cancels_on_the_device(
    stack: Stack, tester: AgentProcess, token: str
) -> None:
    async def scenario() -> tuple[grpc.StatusCode, float]:
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            stub = resources_pb2_grpc.ResourceServiceStub(channel)
            request = resources_pb2.CallResourceRequest(
                user_id="ada", device_id="tester", resource="hold"
            )
            request.input.number_value = 1
            begun = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.CallResource(
                    request, metadata=(("authorization", f"Bearer {token}"),), timeout=0.5
                )
            return info.value.code(), time.monotonic() - begun

    code, waited = seen_after(tester, "hold cancelled", lambda: asyncio.run(scenario()))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert waited < 2.0
