"""A Local API through its real device gateway, with stand-ins for the command registry and
the APN settings (their own tests are in tests/agent/commands), in front of a log dir."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from device_agent.commands import CommandError, CommandTimeout
from device_agent.local_api import LocalApi
from device_agent.local_identity import LocalIdentity, load_identity
from device_agent.local_service import LocalServicer
from tests.support import LoopThread, free_ports

UNIT_ID = "3f1c5a9e-8a44-4d5e-9a55-0c8f1f3b2d71"
PASSWORD = "local-secret-1"
APN_KEYS = ("apn", "user", "pass", "pin", "mtu")


@dataclass
class FakeCommands:
    """Records what it was asked and answers a few commands as the registry would."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def execute(self, command: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        self.calls.append((command, (list(args), dict(kwargs))))
        if command == "test.ping":
            return True
        if command == "cmd.run":
            return " ".join(str(arg) for arg in args)
        if command == "slow.run":
            await asyncio.sleep(0.05)
            raise CommandTimeout("the command did not finish within 0.05 s and was stopped")
        raise CommandError(f"'{command}' is not available.")

    async def execute_raw(self, line: str) -> Any:
        self.calls.append(("raw", line))
        command, _, rest = line.partition(" ")
        return await self.execute(command, rest.split(), {})


@dataclass
class FakeApn:
    settings: dict[str, Any] = field(
        default_factory=lambda: {"apn": "", "user": "", "pass": "", "pin": "", "mtu": 1500}
    )

    def get(self) -> dict[str, Any]:
        return dict(self.settings)

    def put(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - set(APN_KEYS):
            raise CommandError("unknown APN setting")
        self.settings.update(body)
        return dict(self.settings)


@dataclass
class RunningLocalApi:
    base_url: str
    identity: LocalIdentity
    commands: FakeCommands
    log_dir: Path


def start(
    loop: LoopThread, state_dir: Path, password: str | None
) -> tuple[LocalApi, RunningLocalApi]:
    log_dir = state_dir / "log"
    (log_dir / "salt").mkdir(parents=True)
    (log_dir / "syslog").write_text("line one\nline two\n")
    (log_dir / "salt" / "minion").write_text("minion says hello\n")
    identity = load_identity(state_dir, UNIT_ID, password)
    commands = FakeCommands()
    servicer = LocalServicer(
        identity, log_dir=log_dir, commands=commands, apn=FakeApn(), password=password
    )
    port, admin = free_ports(2)
    api = LocalApi(servicer, state_dir=state_dir, port=port, admin_port=admin)
    loop.run(api.start())
    return api, RunningLocalApi(f"http://127.0.0.1:{port}", identity, commands, log_dir)


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def local_api(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningLocalApi]:
    api, running = start(loop_thread, tmp_path_factory.mktemp("agent"), None)
    yield running
    loop_thread.run(api.stop())


@pytest.fixture(scope="module")
def locked_api(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningLocalApi]:
    """A Local API with a password: login checks it, the rest wants the token."""
    api, running = start(loop_thread, tmp_path_factory.mktemp("locked"), PASSWORD)
    yield running
    loop_thread.run(api.stop())


@pytest.fixture
def client(local_api: RunningLocalApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_api.base_url, timeout=15) as http:
        yield http
