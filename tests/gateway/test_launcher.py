"""The Envoy launcher: ports, readiness, failures, stopping, and no orphans."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.launcher import Envoy, GatewayError, PortInUseError, check_port_free, find_envoy
from tests.gateway.conftest import DESCRIPTOR, ROOT, free_port, free_ports, make_spec


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port some other process (here: a socket of ours) is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_envoy_is_found_in_the_virtualenv() -> None:
    assert find_envoy() == Path(sys.executable).parent / "envoy"


def test_free_port_passes_and_stays_free() -> None:
    """A free port raises nothing, and the check releases it: Envoy can bind it next."""
    port = free_port()
    check_port_free(port, "127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_port_in_time_wait_counts_as_free() -> None:
    """A port whose last connection the server closed first (TIME_WAIT) is free: Envoy binds
    with SO_REUSEADDR, so a restart right after a stop must not be refused by the check."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the old Envoy did
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the server side closes first and keeps TIME_WAIT
            client.recv(1)
    with (
        pytest.raises(OSError, match="in use"),
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain,
    ):
        plain.bind(("127.0.0.1", port))  # without SO_REUSEADDR the port is still taken
    check_port_free(port, "127.0.0.1")


def test_taken_port_is_a_clear_error(listening_port: int) -> None:
    with pytest.raises(PortInUseError, match=f"admin port 127.0.0.1:{listening_port} is already"):
        check_port_free(listening_port, "127.0.0.1", "admin port")


def test_command_line(tmp_path: Path) -> None:
    envoy = Envoy(make_spec(free_port()), tmp_path, log_level="info", concurrency=2)
    command = envoy.command()
    assert command[1:3] == ["--config-path", str(tmp_path / "envoy.json")]
    assert "--disable-hot-restart" in command
    assert command[command.index("--log-level") + 1] == "info"
    assert command[command.index("--concurrency") + 1] == "2"


@pytest.mark.integration
def test_start_ready_stop(tmp_path: Path) -> None:
    spec = make_spec(free_port())

    async def scenario() -> tuple[int | None, int | None]:
        envoy = Envoy(spec, tmp_path / "state", concurrency=1)
        await envoy.start()
        await envoy.wait_ready(20)
        running = envoy.returncode
        await envoy.stop(5)
        return running, envoy.returncode

    running, stopped = asyncio.run(scenario())
    assert running is None
    assert stopped is not None
    assert (tmp_path / "state" / "envoy.json").is_file()
    check_port_free(spec.listen_port, spec.listen_host)
    check_port_free(spec.admin_port, "127.0.0.1")


@pytest.mark.integration
def test_taken_listen_port_fails_before_envoy_starts(tmp_path: Path, listening_port: int) -> None:
    spec = dataclasses.replace(make_spec(free_port()), listen_port=listening_port)
    envoy = Envoy(spec, tmp_path)
    with pytest.raises(PortInUseError, match="gateway listen port"):
        asyncio.run(envoy.start())
    assert envoy.pid is None


@pytest.mark.integration
def test_bad_config_fails_with_envoys_message(tmp_path: Path) -> None:
    spec = make_spec(free_port(), services=("thingwire.nope.v1.NoService",))

    async def scenario() -> None:
        envoy = Envoy(spec, tmp_path, concurrency=1)
        await envoy.start()
        try:
            await envoy.wait_ready(20)
        finally:
            await envoy.stop(1)

    with pytest.raises(GatewayError, match=r"(?s)exited with status .*NoService"):
        asyncio.run(scenario())


def test_missing_descriptor_is_refused(tmp_path: Path) -> None:
    spec = dataclasses.replace(make_spec(free_port()), descriptor=tmp_path / "missing.binpb")
    with pytest.raises(GatewayError, match="descriptor set not found"):
        asyncio.run(Envoy(spec, tmp_path).start())


_ORPHAN_SCRIPT = """
import asyncio, sys
from pathlib import Path
from gateway.config import cloud_spec
from gateway.launcher import Envoy

async def main():
    spec = cloud_spec(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]),
                      listen_host="127.0.0.1")
    envoy = Envoy(spec, Path(sys.argv[5]), concurrency=1)
    await envoy.start()
    await envoy.wait_ready(20)
    print(envoy.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie waiting for a reaper counts as dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _gone(pid: int, port: int) -> bool:
    try:
        check_port_free(port, "127.0.0.1")
    except PortInUseError:
        return False
    return not _alive(pid)


@pytest.mark.integration
@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_envoy_dies_with_its_parent(tmp_path: Path) -> None:
    listen, upstream, admin = free_ports(3)
    args = [str(listen), str(upstream), str(admin), str(DESCRIPTOR), str(tmp_path)]
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        envoy_pid = int(parent.stdout.readline())
        assert _alive(envoy_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        # Envoy's main thread may be gone (a zombie leader) while workers still hold the
        # sockets, so wait for the port too.
        deadline = time.monotonic() + 10
        while not _gone(envoy_pid, listen) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(envoy_pid)
        check_port_free(listen, "127.0.0.1")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
