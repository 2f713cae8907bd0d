"""A `nats-server` of a test's own, on a free port, that the test may stop and start again.

Tests that take NATS away never touch the machine's broker (127.0.0.1:4222): they run this.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsProcess:
    """One nats-server on 127.0.0.1:`port`; `stop` and `start` keep the port."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self._log = log_dir / f"nats-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-l", str(self._log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not start on port {self.port}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None


@pytest.fixture
def nats_process(tmp_path: Path) -> Iterator[NatsProcess]:
    if not Path(NATS_SERVER).exists():
        pytest.fail(f"{NATS_SERVER} is missing: install the nats-server package")
    process = NatsProcess(tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()
