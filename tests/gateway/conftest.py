"""Fixtures: the fake upstream and the real Envoy in front of it, on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from gateway.config import GatewaySpec, cloud_spec, transcoded_services
from gateway.launcher import Envoy
from tests.gateway import demo_service
from tests.gateway.fake_upstream import start_server
from tests.support import LoopThread, free_port, free_ports

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR = ROOT / "generated" / "thingwire" / "thingwire.binpb"
#: Short, so that the 504 test does not wait a minute.
UNARY_TIMEOUT_S = 2.0


def make_spec(
    upstream_port: int, descriptor: Path = DESCRIPTOR, **overrides: object
) -> GatewaySpec:
    """The cloud gateway on free loopback ports in front of `upstream_port`."""
    overrides.setdefault("listen_host", "127.0.0.1")
    overrides.setdefault("unary_timeout_s", UNARY_TIMEOUT_S)
    overrides.setdefault("services", transcoded_services(descriptor, device=False))
    http_port, admin_port = free_ports(2)
    return cloud_spec(http_port, upstream_port, admin_port, descriptor, **overrides)


@pytest.fixture(scope="session")
def demo_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real descriptor image plus the test-only DemoService."""
    target = tmp_path_factory.mktemp("image") / "thingwire-demo.binpb"
    return demo_service.write_image(DESCRIPTOR, target)


@dataclass
class RunningGateway:
    """An Envoy that answered LIVE, and how to reach it."""

    envoy: Envoy
    loop: LoopThread

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.envoy.spec.listen_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.envoy.spec.listen_port}"


def start_gateway(loop: LoopThread, spec: GatewaySpec, state_dir: Path) -> RunningGateway:
    """Start Envoy on the loop's thread (its parent-death signal is tied to that thread)."""
    envoy = Envoy(spec, state_dir, concurrency=1)
    loop.run(envoy.start())
    try:
        loop.run(envoy.wait_ready(20))
    except BaseException:
        loop.run(envoy.stop(1))
        raise
    return RunningGateway(envoy, loop)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def upstream_port(loop_thread: LoopThread) -> Iterator[int]:
    server, port = loop_thread.run(start_server())
    yield port
    loop_thread.run(server.stop(0))


@pytest.fixture(scope="session")
def gateway(
    loop_thread: LoopThread,
    upstream_port: int,
    demo_image: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    running = start_gateway(
        loop_thread, make_spec(upstream_port, demo_image), tmp_path_factory.mktemp("gateway")
    )
    yield running
    loop_thread.run(running.envoy.stop(5))


@pytest.fixture(scope="session")
def down_gateway(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway whose upstream port has nothing listening."""
    running = start_gateway(
        loop_thread, make_spec(free_port()), tmp_path_factory.mktemp("down_gateway")
    )
    yield running
    loop_thread.run(running.envoy.stop(5))


@pytest.fixture
def client(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=15) as http:
        yield http


@pytest.fixture
def channel(gateway: RunningGateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway.grpc_target) as chan:
        yield chan
