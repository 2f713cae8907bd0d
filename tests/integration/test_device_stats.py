"""GET /v1/users/{user}/devices/{device}/stats through the real stack, as JSON and as SSE.

`thingwire serve` runs as a process with short link timings, agents run as processes of
their own; the stack is stopped and killed here like an operator's would be.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.storage.db import Database
from server.storage.models import Device
from tests.integration.conftest import PASSWORD
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"connected", "connected_ts", "ip_address", "rx_bytes", "tx_bytes"}
#: Where the agents connect from, as Envoy sees them. Envoy reaches the server over a Unix
#: socket, so taking the server's own peer instead would show "unix:…", never this.
AGENT_ADDRESS = "127.0.0.1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, db_url_factory: Any) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("stats_stack")
    running = Stack(
        workdir=workdir,
        db_url=db_url_factory(workdir),
        extra_env={
            "THINGWIRE_LINK_KEEPALIVE_S": "2",
            "THINGWIRE_LINK_KEEPALIVE_TIMEOUT_S": "2",
            "THINGWIRE_LINK_STATS_INTERVAL_S": "0.5",
            "THINGWIRE_LINK_GO_AWAY_WINDOW_S": "0.2",
        },
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def access_token(stack: Stack, username: str) -> str:
    with stack.http() as http:
        answer = http.post(
            "/oauth/token",
            data={"grant_type": "password", "username": username, "password": PASSWORD},
        )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert isinstance(token, str)
    return token


@pytest.fixture(scope="module")
def token(stack: Stack, ada: dict) -> str:
    return access_token(stack, "ada")


@pytest.fixture(scope="module")
def bobs_device(stack: Stack, bob: dict) -> str:
    return make_device(stack, "bobs_device", user="bob")


def make_device(stack: Stack, name: str, user: str = "ada") -> str:
    stack.cli("device", "create", "--user", user, "--device", name, "--credentials", f"{name}-c")
    return name


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[[Stack, str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(stack: Stack, device: str) -> subprocess.Popen[bytes]:
        target = stack.grpc_target
        with (tmp_path / f"{device}.err").open("wb") as err:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.integration.agent_process",
                    target,
                    "ada",
                    device,
                    f"{device}-c",
                ],
                cwd=ROOT,
                stderr=err,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


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
    stack: Stack, token: str, start_agent: Callable[[Stack, str], subprocess.Popen[bytes]]
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


def read_frames(lines: Iterator[str], count: int) -> list[dict]:
    """The next `count` SSE `data:` frames."""
    frames: list[dict] = []
    for line in lines:
        if line.startswith("data: "):
            frames.append(json.loads(line.removeprefix("data: ")))
            if len(frames) == count:
                break
    return frames


def test_stats_as_server_sent_events_with_the_token_in_the_query(
    stack: Stack, token: str, start_agent: Callable[[Stack, str], subprocess.Popen[bytes]]
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


def test_a_link_quiet_past_envoys_route_timeout_keeps_its_event_stream(
    stack: Stack, token: str
) -> None:
    """Nothing changes for longer than Envoy's default route timeout (15 s): the event
    stream stays open, then ends cleanly when the server stops."""
    device = make_device(stack, "stats_quiet")
    url = f"{stack.base_url}/v1/users/ada/devices/{device}/stats?authorization={token}"
    with (
        httpx.Client(timeout=httpx.Timeout(30)) as http,
        http.stream("GET", url, headers={"Accept": "text/event-stream"}) as events,
    ):
        lines = events.iter_lines()
        assert len(read_frames(lines, 1)) == 1
        time.sleep(16)
        assert stats(stack, token, device).status_code == 200
        stack.stop()
        rest = list(lines)  # ends, without an error from the HTTP client
    assert not [line for line in rest if line.startswith("data: ")]
    stack.start()


def test_figures_survive_a_restart(
    stack: Stack, token: str, start_agent: Callable[[Stack, str], subprocess.Popen[bytes]]
) -> None:
    device = make_device(stack, "stats_restart")
    agent = start_agent(stack, device)
    wait_for_stats(stack, token, device, lambda f: f["connected"])
    agent.kill()
    agent.wait(10)
    final = wait_for_stats(stack, token, device, lambda f: not f["connected"])
    wait_for_row(stack, device, lambda r: not r.connected)
    stack.stop()
    stack.start()
    fresh = access_token(stack, "ada")  # the key file survives too, but ask anew
    assert stats(stack, fresh, device).json() == final
    assert final["rx_bytes"] > 0
    assert final["ip_address"] == AGENT_ADDRESS


def test_a_device_left_connected_by_a_killed_server_is_offline_after_restart(
    stack: Stack, token: str, start_agent: Callable[[Stack, str], subprocess.Popen[bytes]]
) -> None:
    device = make_device(stack, "stats_killed")
    agent = start_agent(stack, device)
    wait_for_stats(stack, token, device, lambda f: f["connected"])
    wait_for_row(stack, device, lambda r: r.connected)
    stack.stop(signal.SIGKILL)  # no goodbye: the row still says connected
    agent.kill()
    agent.wait(10)
    assert stored(stack, device).connected
    stack.start()
    figures = stats(stack, token, device).json()
    assert figures["connected"] is False
    assert figures["ip_address"] == AGENT_ADDRESS
