"""`thingwire serve --replicas 2` as an operator runs it: two server processes behind one
real Envoy, on one PostgreSQL, routing device calls through a nats-server of the test's own
(stopped and started here; the machine's broker is never touched).

Each replica is also called directly on its own gRPC port (`THINGWIRE_GRPC_PORT + I`): a
device has one link, so one of the two answers only through NATS, and both must answer.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from thingwire.devices.v1 import devices_pb2, devices_pb2_grpc, stats_pb2, stats_pb2_grpc
from thingwire.resources.v1 import resources_pb2, resources_pb2_grpc

from tests.conftest import PostgresAdmin
from tests.integration.agents import AgentProcess
from tests.integration.stack import PASSWORD, THINGWIRE, Stack, read_frames
from tests.nats_process import NatsProcess
from tests.support import consecutive_free_ports, free_port

pytestmark = pytest.mark.integration

REPLICAS = 2
WAIT_S = 30.0


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsProcess]:
    process = NatsProcess(tmp_path_factory.mktemp("nats"))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin: PostgresAdmin, nats: NatsProcess
) -> Iterator[Stack]:
    db_url = postgres_admin.create()
    running = Stack(
        workdir=tmp_path_factory.mktemp("replicas"),
        db_url=db_url,
        grpc_port=consecutive_free_ports(REPLICAS),
        serve_args=("--replicas", str(REPLICAS)),
        extra_env={
            "THINGWIRE_NATS_URL": nats.url,
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
        postgres_admin.drop(db_url)


@pytest.fixture(scope="module")
def token(stack: Stack) -> str:
    stack.cli("user", "create", "--email", "ada@example.com", "--password", PASSWORD,
              "--username", "ada")  # fmt: skip
    return stack.thinger_token("ada")


@pytest.fixture
def agents() -> Iterator[Callable[[Stack, str], AgentProcess]]:
    started: list[AgentProcess] = []

    def start(stack: Stack, device: str) -> AgentProcess:
        stack.cli("device", "create", "--user", "ada", "--device", device,
                  "--credentials", f"{device}-c")  # fmt: skip
        agent = AgentProcess(stack, "ada", device, f"{device}-c", simulate=True).start()
        started.append(agent)
        agent.wait_connected()
        return agent

    yield start
    for agent in started:
        agent.__exit__()


def replica_target(stack: Stack, index: int) -> str:
    return f"127.0.0.1:{stack.grpc_port + index}"


def auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def temperature_on(stack: Stack, index: int, token: str, device: str) -> float:
    """GetResource straight on replica `index`, past Envoy."""
    with grpc.insecure_channel(replica_target(stack, index)) as channel:
        answer = resources_pb2_grpc.ResourceServiceStub(channel).GetResource(
            resources_pb2.GetResourceRequest(
                user_id="ada", device_id=device, resource="temperature"
            ),
            metadata=auth(token),
            timeout=10,
        )
    return answer.out.number_value


def rest_temperature(stack: Stack, token: str, device: str) -> httpx.Response:
    with stack.http() as http:
        return http.get(
            f"/v2/users/ada/devices/{device}/temperature",
            headers={"Authorization": f"Bearer {token}"},
        )


def eventually(check: Callable[[], Any], within_s: float = WAIT_S) -> Any:
    """`check()`'s value once it returns without raising an AssertionError or RpcError."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return check()
        except (AssertionError, grpc.RpcError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def replica_pids(stack: Stack) -> dict[int, int]:
    """The running replicas' process ids, by index (the supervisor's children)."""
    assert stack.process is not None
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(stack.process.pid)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    pids: dict[int, int] = {}
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "--replica-index" in args:
            pids[int(args.split("--replica-index")[1].split()[0])] = int(pid)
    return pids


def test_a_call_on_either_replica_reaches_the_device(
    stack: Stack, token: str, agents: Callable[[Stack, str], AgentProcess]
) -> None:
    agents(stack, "routed")
    # One replica holds the link; the other answers only through NATS.
    answers = [temperature_on(stack, index, token, "routed") for index in range(REPLICAS)]
    assert all(isinstance(value, float) for value in answers)
    # Through the gateway, which balances over both replicas.
    for _ in range(6):
        answer = rest_temperature(stack, token, "routed")
        assert answer.status_code == 200, answer.text
        assert isinstance(answer.json()["out"], (int, float))  # 21.0 prints as 21
    # An offline device is 404 on both, as on one process.
    stack.cli("device", "create", "--user", "ada", "--device", "asleep", "--credentials", "x1")
    for index in range(REPLICAS):
        with pytest.raises(grpc.RpcError) as offline:
            temperature_on(stack, index, token, "asleep")
        assert offline.value.code() == grpc.StatusCode.NOT_FOUND
        assert offline.value.details() == "device 'asleep' is not connected"
    answer = rest_temperature(stack, token, "asleep")
    assert answer.status_code == 404
    assert answer.json() == {"error": {"message": "device 'asleep' is not connected"}}


def test_stats_and_deletion_see_the_device_from_either_replica(
    stack: Stack, token: str, agents: Callable[[Stack, str], AgentProcess]
) -> None:
    agents(stack, "watched")
    for index in range(REPLICAS):
        with grpc.insecure_channel(replica_target(stack, index)) as channel:
            stub = stats_pb2_grpc.DeviceStatsStreamServiceStub(channel)
            stream = stub.StreamDeviceStats(
                stats_pb2.StreamDeviceStatsRequest(user_id="ada", device_id="watched"),
                metadata=auth(token),
                timeout=20,
            )
            first = next(stream)
            assert first.connected
            temperature_on(stack, 1 - index, token, "watched")  # bytes move on the link
            later = next(stream)
            assert later.connected
            assert later.rx_bytes > first.rx_bytes
            stream.cancel()
        # Deleting a connected device is refused by both replicas.
        with grpc.insecure_channel(replica_target(stack, index)) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                devices_pb2_grpc.DeviceServiceStub(channel).DeleteDevice(
                    devices_pb2.DeleteDeviceRequest(user_id="ada", device_id="watched"),
                    metadata=auth(token),
                    timeout=10,
                )
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # SSE through the gateway, as a browser would.
    with (
        httpx.Client(base_url=stack.base_url, timeout=15) as http,
        http.stream(
            "GET",
            "/v1/users/ada/devices/watched/stats",
            params={"authorization": token},
            headers={"Accept": "text/event-stream"},
        ) as answer,
    ):
        assert answer.status_code == 200
        assert read_frames(answer.iter_lines(), 1)[0]["connected"] is True


def test_a_killed_replica_is_restarted_and_its_devices_answer_from_the_other(
    stack: Stack, token: str, agents: Callable[[Stack, str], AgentProcess]
) -> None:
    agent = agents(stack, "survivor")
    # Kill each replica in turn: one of the kills takes the device's link with it.
    for index in range(REPLICAS):
        before = agent.connections()
        victim = replica_pids(stack)[index]
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        eventually(partial(_restarted, stack, index, victim))
        for other in range(REPLICAS):
            eventually(partial(temperature_on, stack, other, token, "survivor"))
        answer = eventually(lambda: _ok(rest_temperature(stack, token, "survivor")))
        assert isinstance(answer["out"], (int, float))  # 21.0 prints as 21
        print(f"replica {index} killed: the agent opened {agent.connections() - before} links")
    assert agent.connections() >= 2  # the link moved at least once
    assert "replica 0 exited with status -9; starting it again" in stack.logs()
    # The stats say connected: the dead replica's link did not leave it marked offline.
    figures = eventually(lambda: _connected(stack, token, "survivor"))
    assert figures["connected"] is True


def test_nats_down_gives_clear_errors_and_recovers(
    stack: Stack, token: str, nats: NatsProcess, agents: Callable[[Stack, str], AgentProcess]
) -> None:
    agents(stack, "brokerless")
    nats.stop()
    try:
        outcomes = []
        for index in range(REPLICAS):
            try:
                temperature_on(stack, index, token, "brokerless")
                outcomes.append(("OK", ""))
            except grpc.RpcError as error:
                outcomes.append((error.code().name, error.details() or ""))
        # The holder still serves its own link; the other says the broker is away.
        assert sorted(code for code, _ in outcomes) == ["OK", "UNAVAILABLE"]
        assert any("NATS" in details for _, details in outcomes)
        statuses = set()
        for _ in range(6):
            answer = rest_temperature(stack, token, "brokerless")
            statuses.add(answer.status_code)
            if answer.status_code == 503:
                assert "NATS" in answer.json()["error"]["message"]
        assert statuses <= {200, 503}
    finally:
        nats.start()
    for index in range(REPLICAS):
        eventually(partial(temperature_on, stack, index, token, "brokerless"))
    assert _ok(rest_temperature(stack, token, "brokerless")) is not None


def test_replicas_refuse_sqlite_and_a_missing_nats_url(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin:/bin", "THINGWIRE_GRPC_PORT": str(free_port())}
    cases = {
        "sqlite": {**base, "THINGWIRE_NATS_URL": "nats://127.0.0.1:4222"},
        "no nats": {**base, "THINGWIRE_DB_URL": "postgresql://postgres@127.0.0.1/x"},
    }
    messages = {}
    for name, env in cases.items():
        result = subprocess.run(
            [THINGWIRE, "serve", "--replicas", "2"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        messages[name] = result.stderr.strip().splitlines()[-1]
    assert "needs PostgreSQL" in messages["sqlite"]
    assert "set THINGWIRE_NATS_URL" in messages["no nats"]


def _restarted(stack: Stack, index: int, killed: int) -> None:
    assert replica_pids(stack).get(index, killed) != killed


def _ok(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()


def _connected(stack: Stack, token: str, device: str) -> dict:
    with stack.http() as http:
        answer = http.get(
            f"/v1/users/ada/devices/{device}/stats", headers={"Authorization": f"Bearer {token}"}
        )
    figures = _ok(answer)
    assert figures["connected"], json.dumps(figures)
    return dict(figures)
