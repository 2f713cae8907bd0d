"""Real agents: `thingwire agent` as a process, linked to a `Stack`'s gateway.

    agent = AgentProcess(stack, "ada", "nodemcu", "s3cret", simulate=True)
    agent.start()
    agent.wait_connected()      # its log says "link open"
    agent.pause(); agent.resume()   # SIGSTOP / SIGCONT: a device that hangs
    assert agent.stop() == 0    # SIGTERM

With `test_resources=True` it runs `tests/integration/agent_process.py` instead: the same
command with resources for tests (`echo`, `hold`, ...; `release()` lets held calls go).

Whether it is connected is read from its own log (`<state dir>/log/syslog`), the one
observable that needs nothing of the server's APIs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from device_agent.outbox_store import OutboxStore
from device_agent.records import encode
from tests.integration.stack import ROOT, THINGWIRE, Stack, stop_process
from tests.support import free_port

#: What the agent logs each time a link is welcomed (device_agent/agent.py).
LINK_OPEN = "link open as "
CONNECT_TIMEOUT_SECONDS = 30


@dataclass
class AgentProcess:
    """One `thingwire agent` process with its own state directory under the stack's."""

    stack: Stack
    user: str
    device: str
    credentials: str
    simulate: bool = False
    #: Also declare the test-only resources of `tests/integration/agent_process.py`.
    test_resources: bool = False
    #: The `thingwire` command to run (another virtualenv's, for the packaging tests).
    executable: Path = THINGWIRE
    #: Where it connects: the stack's gateway unless set.
    server: str | None = None
    #: Names its state directory (default: the device id); two agents of one device need two.
    name: str = ""
    #: Run its Local API (the device gateway) on free ports; off (`--no-local-api`) unless a
    #: test is about it, so that agents start fast and many run side by side.
    local_api: bool = False
    #: `--unit-id`: the cloud's unit id of the device, for the Local API.
    unit_id: str | None = None
    local_port: int = field(default_factory=free_port)
    local_admin_port: int = field(default_factory=free_port)
    #: More environment for the agent (THINGWIRE_AGENT_LOCAL_PASSWORD, say).
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def state_dir(self) -> Path:
        return self.stack.workdir / "agents" / (self.name or self.device)

    @property
    def syslog(self) -> Path:
        return self.state_dir / "log" / "syslog"

    @property
    def stderr_path(self) -> Path:
        return self.state_dir / "agent.err"

    def command(self) -> list[str]:
        program = (
            [sys.executable, "-m", "tests.integration.agent_process"]
            if self.test_resources
            else [str(self.executable), "agent"]
        )
        return [
            *program,
            *("--server", self.server or self.stack.grpc_target),
            *("--user", self.user, "--device", self.device, "--credentials", self.credentials),
            *(["--simulate"] if self.simulate else []),
            *([] if self.local_api else ["--no-local-api"]),
            *(["--unit-id", self.unit_id] if self.unit_id else []),
        ]

    @property
    def local_url(self) -> str:
        """Its Local API, when it runs one."""
        return f"http://127.0.0.1:{self.local_port}"

    def start(self) -> AgentProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "THINGWIRE_AGENT_STATE_DIR": str(self.state_dir),
            "THINGWIRE_LOCAL_PORT": str(self.local_port),
            "THINGWIRE_AGENT_ENVOY_ADMIN_PORT": str(self.local_admin_port),
            **self.extra_env,
        }
        if self.test_resources:  # the test program lives in the checkout, not in a package
            env["PYTHONPATH"] = str(ROOT)
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.state_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        return self

    @property
    def outbox_path(self) -> Path:
        """Its outbox (`<state dir>/outbox.db`, device_agent/outbox_store.py)."""
        return self.state_dir / "outbox.db"

    def fill_outbox(self, records: list[dict]) -> None:
        """Put `records` in its outbox, committed, as if its sources had appended them
        before it was (re)started; call it while the agent is not running."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        store = OutboxStore(self.outbox_path, max_bytes=1 << 40)
        try:
            bodies = [encode(record) for record in records]
            assert None not in bodies, "every record needs @t and @ts"
            store.append([body for body in bodies if body is not None])
        finally:
            store.close()

    def outbox_records(self) -> list[dict]:
        """Every record its outbox holds now (in batches or not), read from the file."""
        db = sqlite3.connect(self.outbox_path)
        try:
            found = [json.loads(body) for (body,) in db.execute("SELECT body FROM records")]
            for (batch,) in db.execute("SELECT records FROM batches"):
                found.extend(json.loads(batch))
        finally:
            db.close()
        return found

    def log(self) -> str:
        """Its log so far (empty before it wrote one)."""
        try:
            return self.syslog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def connections(self) -> int:
        """How many links it has opened so far."""
        return self.log().count(LINK_OPEN)

    def wait_for(self, text: str, count: int = 1, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
        """Until its log holds `text` `count` times; fails if it exits or time runs out."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"agent exited {self.process.returncode} waiting for {text!r}:\n{self.stderr()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} x{count} within {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def wait_connected(self, count: int = 1, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
        """Until it has opened its `count`th link."""
        self.wait_for(LINK_OPEN, count, timeout)

    def wait_exit(self, timeout: float = CONNECT_TIMEOUT_SECONDS) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send `sig` (SIGTERM by default) and wait for the exit code; kill it if it hangs."""
        assert self.process is not None
        return stop_process(self.process, sig, timeout)

    def kill(self) -> int:
        """SIGKILL: the device vanishes without closing its link."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the process hangs with its connection open."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def release(self) -> None:
        """SIGUSR1: the test program's `hold` calls answer."""
        assert self.process is not None
        assert self.test_resources, "only the test program has `hold`"
        self.process.send_signal(signal.SIGUSR1)

    def __enter__(self) -> AgentProcess:
        """Starts it, unless it was started already."""
        return self if self.process is not None else self.start()

    def __exit__(self, *_: object) -> None:
        """Whatever happened in the block, no agent outlives it."""
        if self.process is not None and self.process.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM until continued
            with contextlib.suppress(subprocess.TimeoutExpired):  # stop() killed it
                self.stop()
