"""Link health through the real Envoy: quiet links stay up, dead ones are noticed.

The server runs in-process (so the test can call the device through its router, as the
resource APIs do), behind a real Envoy over the gateway socket; the agent is a process of
its own, so it can be stopped like a hung device (SIGSTOP: its kernel still holds the TCP
connection open, but nothing answers HTTP/2 PINGs). These cases need no second database:
they are about the transport, and run on SQLite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import struct_pb2

from server.app import RunningServer, create_server
from server.link.link import DeviceKey, Link, LinkLimits
from server.security.keys import KeyRing
from server.storage import devices, users
from server.storage.db import Database
from tests.gateway.conftest import RunningGateway, make_spec, start_gateway
from tests.support import LoopThread

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USER, DEVICE, CREDENTIALS = "ada", "boiler", "boiler-s3cret"
#: Envoy's default route timeout, which must not apply to a device link.
ENVOY_DEFAULT_ROUTE_TIMEOUT_S = 15.0


@dataclass
class Cloud:
    """An in-process server behind a real Envoy."""

    loop: LoopThread
    running: RunningServer
    gateway: RunningGateway
    key: DeviceKey

    def link(self) -> Link | None:
        async def get() -> Link | None:
            link = self.running.state.links.get(self.key)
            return link if link is not None and link.closed is None else None

        return self.loop.run(get)

    def wait_for(self, check: Callable[[Link | None], bool], timeout: float) -> float:
        """Seconds until `check(link)` held; fails after `timeout`."""
        started = time.monotonic()
        while not check(self.link()):
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not within {timeout} s")
            time.sleep(0.05)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('db') / 'link.db'}")
    db.migrate()
    with db.session() as s:
        user = users.create_user(s, "ada@example.com", "a-long-password", username=USER)
        devices.create_device(s, user.id, DEVICE, CREDENTIALS)
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def make_cloud(
    database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[float, float], Cloud]]:
    loop = LoopThread()
    clouds: list[Cloud] = []

    def make(keepalive_s: float, timeout_s: float) -> Cloud:
        where = tmp_path_factory.mktemp("cloud")
        socket = where / "server" / "gateway.sock"
        limits = LinkLimits(keepalive_s=keepalive_s, keepalive_timeout_s=timeout_s)
        running = loop.run(
            lambda: create_server(
                database, gateway_socket=socket, keys=KeyRing.generate(), link_limits=limits
            )
        )
        spec = make_spec(
            running.port,
            upstream_socket=socket,
            keepalive_interval_s=keepalive_s,
            keepalive_timeout_s=timeout_s,
        )
        gateway = start_gateway(loop, spec, where / "gateway")
        with database.session() as s:
            user = users.get_user_by_username(s, USER)
            assert user is not None
            key = DeviceKey(user.id, DEVICE)
        cloud = Cloud(loop, running, gateway, key)
        clouds.append(cloud)
        return cloud

    yield make
    for cloud in clouds:
        loop.run(cloud.gateway.envoy.stop(5))
        loop.run(lambda c=cloud: c.running.stop(0))  # type: ignore[misc]
    loop.close()


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"agent{len(started)}.err").open("wb") as err:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.integration.agent_process",
                    target,
                    USER,
                    DEVICE,
                    CREDENTIALS,
                ],
                cwd=ROOT,
                stderr=err,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait(10)


def test_a_link_quiet_for_longer_than_envoys_default_timeouts_stays_up_and_answers(
    make_cloud: Callable[[float, float], Cloud],
    start_agent: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    # The default keepalive: PINGs every 10 s, fewer than the quiet time's worth of chances
    # for a timeout to strike.
    cloud = make_cloud(10.0, 10.0)
    start_agent(cloud.gateway.grpc_target)
    cloud.wait_for(lambda link: link is not None, 20)
    first = cloud.link()
    time.sleep(ENVOY_DEFAULT_ROUTE_TIMEOUT_S + 3)
    assert cloud.link() is first  # the same link: never cut, never replaced

    answer = cloud.loop.run(
        lambda: cloud.running.state.router.invoke(
            cloud.key, "echo", struct_pb2.Value(string_value="still here"), 5
        )
    )
    assert answer == struct_pb2.Value(string_value="still here")


def test_a_hung_device_is_shown_offline_within_the_keepalive_time(
    make_cloud: Callable[[float, float], Cloud],
    start_agent: Callable[[str], subprocess.Popen[bytes]],
    database: Database,
) -> None:
    keepalive_s, timeout_s = 1.0, 1.0
    cloud = make_cloud(keepalive_s, timeout_s)
    agent = start_agent(cloud.gateway.grpc_target)
    cloud.wait_for(lambda link: link is not None, 20)
    time.sleep(2 * (keepalive_s + timeout_s))  # quiet but alive: PINGs answered, link kept
    assert cloud.link() is not None

    os.kill(agent.pid, signal.SIGSTOP)
    took = cloud.wait_for(lambda link: link is None, 10)
    # A PING is due within interval · 1.15 (Envoy's jitter), then it has `timeout_s`.
    assert took < keepalive_s * 1.15 + timeout_s + 1.5
    cloud.wait_for(lambda _link: cloud.running.state.link_stats.waiting == 0, 5)
    with database.session() as s:
        row = devices.get_device(s, cloud.key.user_id, DEVICE)
        assert not row.connected

    os.kill(agent.pid, signal.SIGCONT)  # the device wakes up: it reconnects by itself
    cloud.wait_for(lambda link: link is not None, 20)
