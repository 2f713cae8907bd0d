"""Run the stack the way an operator does: `thingwire serve` and CLI commands, as processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port

THINGWIRE = Path(sys.executable).with_name("thingwire")
ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 60
#: The password of the users the fixtures create (tests/integration/conftest.py).
PASSWORD = "s3cret-Passw0rd"


@dataclass
class Stack:
    """A running `thingwire serve` in its own directory, with its own ports and database."""

    workdir: Path
    db_url: str
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    #: The `thingwire` command to run (another virtualenv's, for the packaging tests).
    executable: Path = THINGWIRE
    process: subprocess.Popen | None = None
    #: More THINGWIRE_* settings for this stack (short link timings, say).
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Options of `thingwire serve` (`--replicas 2`, say).
    serve_args: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "THINGWIRE_DB_URL": self.db_url,
            "THINGWIRE_HTTP_PORT": str(self.http_port),
            "THINGWIRE_GRPC_PORT": str(self.grpc_port),
            "THINGWIRE_ENVOY_ADMIN_PORT": str(self.admin_port),
            **self.extra_env,
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        """Envoy's port: native gRPC shares it with REST."""
        return f"127.0.0.1:{self.http_port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (
            (self.workdir / "serve.out").open("wb") as out,
            (self.workdir / "serve.err").open("wb") as err,
        ):
            # The child keeps its own copies of the descriptors.
            self.process = subprocess.Popen(
                [self.executable, "serve", *self.serve_args],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited {self.process.returncode}: {self.logs()}")
            if "thingwire is up" in self.output():
                return
            time.sleep(0.1)
        raise RuntimeError(f"serve did not come up: {self.logs()}")

    def output(self) -> str:
        return (self.workdir / "serve.out").read_text(errors="replace")

    def logs(self) -> str:
        return self.output() + (self.workdir / "serve.err").read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.process is not None
        return stop_process(self.process, sig, timeout)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a management command against this stack's database."""
        result = subprocess.run(
            [self.executable, *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"thingwire {' '.join(args)} failed: {result.stderr}")
        return result

    def cli_json(self, *args: str) -> dict:
        """The JSON object a management command prints on its last stdout line."""
        return json.loads(self.cli(*args).stdout.strip().splitlines()[-1])

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=15)

    def thinger_token(self, username: str, password: str = PASSWORD) -> str:
        """A Thinger access token of `username` (the OAuth password grant, as documented)."""
        with self.http() as http:
            answer = http.post(
                "/oauth/token",
                data={"grant_type": "password", "username": username, "password": password},
            )
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        assert isinstance(token, str)
        return token

    def device_token(self, token: str, device: str, user: str = "ada", **fields: object) -> dict:
        """A new device token (`{"id", "name", "token"}`), created with the user's `token`."""
        with self.http() as http:
            created = http.post(
                f"/v1/users/{user}/devices/{device}/tokens",
                json={"token_name": f"t{time.monotonic_ns()}", **fields},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert created.status_code == 200, created.text
        return dict(created.json())


def read_frames(lines: Iterator[str], count: int) -> list[dict]:
    """The next `count` SSE `data:` frames."""
    frames: list[dict] = []
    for line in lines:
        if line.startswith("data: "):
            frames.append(json.loads(line.removeprefix("data: ")))
            if len(frames) == count:
                break
    return frames


def stop_process(process: subprocess.Popen, sig: int, timeout: float) -> int:
    """Send `sig` and wait for the exit code; SIGKILL it (and raise) if it hangs."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@contextlib.contextmanager
def running_stack(workdir: Path, db_url: str, **extra_env: str) -> Iterator[Stack]:
    """A started stack with these THINGWIRE_* settings, stopped when the block ends."""
    stack = Stack(workdir=workdir, db_url=db_url, extra_env=extra_env)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def stack_fixture(**extra_env: str) -> Any:
    """A module's `stack` fixture: one stack per module and database kind, with these
    THINGWIRE_* settings (`stack = stack_fixture(THINGWIRE_LINK_KEEPALIVE_S="2")`)."""

    @pytest.fixture(scope="module")
    def stack(tmp_path_factory: pytest.TempPathFactory, db_url_factory: Any) -> Iterator[Stack]:
        workdir: Path = tmp_path_factory.mktemp("stack")
        with running_stack(workdir, db_url_factory(workdir), **extra_env) as running:
            yield running

    return stack
