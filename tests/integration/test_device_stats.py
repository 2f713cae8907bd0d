"""GET /v1/users/{user}/devices/{device}/stats through the real stack, as JSON and as SSE,
and what the link's health does to a device.

`thingwire serve` runs as a process with short link timings (PINGs every 2 s, 2 s to answer),
agents are `thingwire agent` processes; the stack is stopped and killed here like an
operator's would be.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import sqlalchemy as sa

from server.storage.db import Database
from server.storage.models import Device
from tests.integration.agents import AgentProcess
from tests.integration.stack import Stack, read_frames, stack_fixture

pytestmark = pytest.mark.integration

KEEPALIVE_S, KEEPALIVE_TIMEOUT_S = 2.0, 2.0
FIELDS = {"connected", "connected_ts", "ip_address", "rx_bytes", "tx_bytes"}
#: Where the agents connect from, as Envoy sees them. Envoy reaches the server over a Unix
#: socket, so taking the server's own peer instead would show "unix:…", never this.
AGENT_ADDRESS = "127.0.0.1"


stack = stack_fixture(
    THINGWIRE_LINK_KEEPALIVE_S=str(KEEPALIVE_S),
    THINGWIRE_LINK_KEEPALIVE_TIMEOUT_S=str(KEEPALIVE_TIMEOUT_S),
    THINGWIRE_LINK_STATS_INTERVAL_S="0.5",
    THINGWIRE_LINK_GO_AWAY_WINDOW_S="0.2",
)


@pytest.fixture(scope="module")
def token(stack: Stack, ada: dict) -> str:
    return stack.thinger_token("ada")


@pytest.fixture(scope="module")
def bobs_device(stack: Stack, bob: dict) -> str:
    return make_device(stack, "bobs_device", user="bob")


def make_device(stack: Stack, name: str, user: str = "ada") -> str:
    stack.cli("device", "create", "--user", user, "--device", name, "--credentials", f"{name}-c")
    return name


@pytest.fixture
def start_agent() -> Iterator[Callable[[Stack, str], AgentProcess]]:
    """Starts `thingwire agent` for a device of ada's made with `make_device`."""
    started: list[AgentProcess] = []

    def start(stack: Stack, device: str) -> AgentProcess:
        agent = AgentProcess(stack, "ada", device, f"{device}-c").start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.__exit__()


def stats(stack: Stack, token: str, device: str, user: str = "ada") -> httpx.Response:
    with stack.http() as http:
        return http.get(
            f"/v1/users/{user}/devices/{device}/stats",
            headers={"Authorization": f"Bearer {token}"},
        )


def wait_for_stats(
    stack: Stack, token: str, device: str, check: Callable[[dict], bool], timeout: float = 20
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        answer = stats(stack, token, device)
        assert answer.status_code == 200, answer.text
        figures = answer.json()
        if check(figures):
            return figures
        if time.monotonic() > deadline:
            raise AssertionError(f"stats never matched: {figures}")
        time.sleep(0.1)


def stored(stack: Stack, device: str) -> Device:
    database = Database(stack.db_url)
    try:
        with database.session() as s:
            row = s.scalar(sa.select(Device).where(Device.device_id == device))
            assert row is not None
            s.expunge(row)
            return row
    finally:
        database.dispose()


def test_stats_of_a_connected_device_show_its_link(
    stack: Stack, token: str, start_agent: Callable[[Stack, str], AgentProcess]
) -> None:
    device = make_device(stack, "stats_json")
    never = stats(stack, token, device)
    assert never.status_code == 200
    assert never.headers["content-type"] == "application/json"
    assert never.json() == {
        "connected": False,
        "connected_ts": 0,
        "ip_address": "",
        "rx_bytes": 0,
        "tx_bytes": 0,
    }
    before_ms = time.time() * 1000
    start_agent(stack, device)
    figures = wait_for_stats(stack, token, device, lambda f: f["connected"])
    assert set(figures) == FIELDS
    assert before_ms - 1000 <= figures["connected_ts"] <= time.time() * 1000
    assert isinstance(figures["connected_ts"], int)
    assert figures["ip_address"] == AGENT_ADDRESS  # the device's address, not Envoy's
    assert figures["rx_bytes"] > 0
    assert figures["tx_bytes"] > 0
    # Written to the devices table too (the Devices API reads it there).
    row = wait_for_row(stack, device, lambda r: r.connected)
    assert row.ip_address == AGENT_ADDRESS
    # The Devices API shows the same link.
    with stack.http() as http:
        listed = http.get("/v1/users/ada/devices", params={"id": device}, headers=bearer(token))
    assert [d["connection"] for d in listed.json()] == [
        {"active": True, "ts": figures["connected_ts"]}
    ]


def wait_for_row(stack: Stack, device: str, check: Callable[[Device], bool]) -> Device:
    deadline = time.monotonic() + 10
    while not check(row := stored(stack, device)):
        if time.monotonic() > deadline:
            raise AssertionError("the devices table never showed it")
        time.sleep(0.1)
    return row


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
def test_stats_refusals_have_thingers_shape(
    stack: Stack, token: str, bobs_device: str, accept: str
) -> None:
    cases = [
        ("bob", "bobs_device", 401),  # another user's device
        ("bob", "no_such_device", 401),  # the same answer when it does not exist
        ("ada", "bobs_device", 404),  # not one of ada's devices
        ("ada", "bad-id", 400),
    ]
    with stack.http() as http:
        for user, device, status in cases:
            answer = http.get(
                f"/v1/users/{user}/devices/{device}/stats",
                headers={"Authorization": f"Bearer {token}", "Accept": accept},
            )
            assert answer.status_code == status, (user, device, answer.text)
            assert set(answer.json()) == {"error"}
        anonymous = http.get("/v1/users/ada/devices/bobs_device/stats", headers={"Accept": accept})
    assert anonymous.status_code == 401


def test_stats_as_server_sent_events_with_the_token_in_the_query(
    stack: Stack, token: str, start_agent: Callable[[Stack, str], AgentProcess]
) -> None:
    device = make_device(stack, "stats_sse")
    url = f"{stack.base_url}/v1/users/ada/devices/{device}/stats?authorization={token}"
    with (
        httpx.Client(timeout=httpx.Timeout(20)) as http,
        http.stream("GET", url, headers={"Accept": "text/event-stream"}) as events,
    ):
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        (first,) = read_frames(lines, 1)
        assert first == {
            "connected": False,
            "connected_ts": 0,
            "ip_address": "",
            "rx_bytes": 0,
            "tx_bytes": 0,
        }
        agent = start_agent(stack, device)
        frame = first
        while not frame["connected"]:
            (frame,) = read_frames(lines, 1)
        assert frame["ip_address"] == AGENT_ADDRESS
        assert frame["rx_bytes"] > 0
        agent.kill()  # the link ends: a frame says so
        while frame["connected"]:
            (frame,) = read_frames(lines, 1)
        assert frame["connected_ts"] > 0


def test_an_event_stream_ends_cleanly_when_the_server_stops(stack: Stack, token: str) -> None:
    """(Quiet past Envoy's default route timeout, an event stream stays open:
    tests/integration/test_rest_resources.py.)"""
    device = make_device(stack, "stats_quiet")
    url = f"{stack.base_url}/v1/users/ada/devices/{device}/stats?authorization={token}"
    with (
        httpx.Client(timeout=httpx.Timeout(30)) as http,
        http.stream("GET", url, headers={"Accept": "text/event-stream"}) as events,
    ):
        lines = events.iter_lines()
        assert len(read_frames(lines, 1)) == 1
        stack.stop()
        rest = list(lines)  # ends, without an error from the HTTP client
    assert not [line for line in rest if line.startswith("data: ")]
    stack.start()


def test_figures_survive_a_restart(
    stack: Stack, token: str, start_agent: Callable[[Stack, str], AgentProcess]
) -> None:
    device = make_device(stack, "stats_restart")
    agent = start_agent(stack, device)
    wait_for_stats(stack, token, device, lambda f: f["connected"])
    agent.kill()
    final = wait_for_stats(stack, token, device, lambda f: not f["connected"])
    wait_for_row(stack, device, lambda r: not r.connected)
    stack.stop()
    stack.start()
    fresh = stack.thinger_token("ada")  # the key file survives too, but ask anew
    assert stats(stack, fresh, device).json() == final
    assert final["rx_bytes"] > 0
    assert final["ip_address"] == AGENT_ADDRESS


def test_a_device_left_connected_by_a_killed_server_is_offline_after_restart(
    stack: Stack, token: str, start_agent: Callable[[Stack, str], AgentProcess]
) -> None:
    device = make_device(stack, "stats_killed")
    agent = start_agent(stack, device)
    wait_for_stats(stack, token, device, lambda f: f["connected"])
    wait_for_row(stack, device, lambda r: r.connected)
    stack.stop(signal.SIGKILL)  # no goodbye: the row still says connected
    agent.kill()
    assert stored(stack, device).connected
    stack.start()
    figures = stats(stack, token, device).json()
    assert figures["connected"] is False
    assert figures["ip_address"] == AGENT_ADDRESS


def test_a_hung_device_goes_offline_within_the_keepalive_time_and_only_then_is_deleted(
    stack: Stack, token: str, start_agent: Callable[[Stack, str], AgentProcess]
) -> None:
    """Connected, a device cannot be deleted (400). SIGSTOPped, its kernel keeps the TCP
    connection but nothing answers PINGs: it is offline within about keepalive · 1.15 +
    timeout, and can be deleted; woken up, the same agent's reconnect is refused."""
    device = make_device(stack, "stats_hung")
    agent = start_agent(stack, device)
    wait_for_stats(stack, token, device, lambda f: f["connected"])
    with stack.http() as http:
        refused = http.delete(f"/v1/users/ada/devices/{device}", headers=bearer(token))
        assert refused.status_code == 400, refused.text
        assert refused.json() == {
            "error": {
                "message": f"device '{device}' is connected: disconnect it before deleting it"
            }
        }
        agent.pause()
        begun = time.monotonic()
        wait_for_stats(stack, token, device, lambda f: not f["connected"], timeout=10)
        took = time.monotonic() - begun
        deleted = http.delete(f"/v1/users/ada/devices/{device}", headers=bearer(token))
        assert deleted.status_code == 200, deleted.text
        listed = http.get("/v1/users/ada/devices", params={"id": device}, headers=bearer(token))
        assert listed.json() == []
    # A PING is due within interval · 1.15 (Envoy's jitter), then it has the timeout.
    assert took < KEEPALIVE_S * 1.15 + KEEPALIVE_TIMEOUT_S + 1.5, took
    agent.resume()
    assert agent.wait_exit() == 1
    assert agent.stderr().splitlines()[-1] == (
        "thingwire: error: the server refused the link: invalid device credentials "
        "(UNAUTHENTICATED)"
    )
    assert agent.connections() == 1


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def event_stream_status(stack: Stack, token: str, device: str) -> tuple[int, dict]:
    """The status of an event stream opened with `?authorization=`, and its first frame or
    error body."""
    url = f"{stack.base_url}/v1/users/ada/devices/{device}/stats"
    with (
        httpx.Client(timeout=httpx.Timeout(10)) as http,
        http.stream(
            "GET", url, params={"authorization": token}, headers={"Accept": "text/event-stream"}
        ) as events,
    ):
        if events.status_code != 200:
            return events.status_code, json.loads(events.read())
        (frame,) = read_frames(events.iter_lines(), 1)
        return 200, frame


def test_device_tokens_on_stats_and_their_event_stream(stack: Stack, token: str) -> None:
    """A device token reads its own device's figures, as JSON and as SSE with
    `?authorization=`, and no other device's; deleted or expired, it stops."""
    mine, other = make_device(stack, "stats_tok"), make_device(stack, "stats_tok_other")
    expires_ms = int(time.time() * 1000) + 1500
    expiring = stack.device_token(token, mine, token_expiration=expires_ms)["token"]
    created = stack.device_token(token, mine)
    own = created["token"]

    for credential in (own, expiring):
        assert stats(stack, credential, mine).status_code == 200
        assert event_stream_status(stack, credential, mine)[0] == 200
    for device in (other, "no_such_device"):
        refused = {"error": {"message": f"not authorized for device '{device}'"}}
        answer = stats(stack, own, device)
        assert (answer.status_code, answer.json()) == (401, refused)
        assert event_stream_status(stack, own, device) == (401, refused)

    with stack.http() as http:
        removed = http.delete(
            f"/v1/users/ada/devices/{mine}/tokens/{created['id']}", headers=bearer(token)
        )
    assert removed.status_code == 200
    assert stats(stack, own, mine).status_code == 401  # at once
    assert event_stream_status(stack, own, mine)[0] == 401

    time.sleep(max(0.0, expires_ms / 1000 - time.time()) + 1.1)  # JWT expiry is in seconds
    assert stats(stack, expiring, mine).status_code == 401
    assert event_stream_status(stack, expiring, mine)[0] == 401
