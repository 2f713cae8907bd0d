"""The operator's view: CLI commands and `thingwire serve` supervision."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from server.storage.db import Database
from server.storage.models import Base
from tests.integration.conftest import PASSWORD
from tests.integration.stack import Stack
from tests.support import free_port

pytestmark = pytest.mark.integration


def test_user_create_prints_one_json_object(stack: Stack) -> None:
    user = stack.cli_json("user", "create", "--email", "cli@example.com", "--password", PASSWORD)
    assert set(user) == {"pk", "username", "email"}
    assert user["email"] == "cli@example.com"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("user", "create", "--email", "ada@example.com", "--password", PASSWORD), "already"),
        (("user", "create", "--email", "not-an-email", "--password", PASSWORD), "email"),
        (("user", "create", "--email", "short@example.com", "--password", "short"), "at least 8"),
        (("device", "create", "--user", "nobody", "--device", "d1", "--credentials", "c"), "user"),
        (("apitoken", "create", "--user", "ada", "--name", "x", "--expires", "soon"), "ISO"),
        (("asset", "create", "--org", "nope", "--name", "a", "--inputs", "senx"), ""),
    ],
)
def test_cli_errors_are_clear(stack: Stack, ada: dict, args: tuple[str, ...], message: str) -> None:
    result = stack.cli(*args, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("thingwire: error:")
    assert message.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("device_id", ["has space", "x" * 26, "semi;colon", ""])
def test_invalid_device_ids_are_refused(stack: Stack, ada: dict, device_id: str) -> None:
    result = stack.cli(
        "device",
        "create",
        "--user",
        "ada",
        "--device",
        device_id,
        "--credentials",
        "c",
        check=False,
    )
    assert result.returncode != 0
    assert "device" in result.stderr.lower()


def test_device_org_input_asset(stack: Stack, ada: dict) -> None:
    device = stack.cli_json(
        "device",
        "create",
        "--user",
        "ada",
        "--device",
        "nodemcu",
        "--credentials",
        "BN8RbpRKfxhm",
        "--description",
        "NodeMCU With ESP8266",
    )
    assert device["device"] == "nodemcu"
    assert len(device["unit_id"]) == 36
    assert device["push_token"]
    org = stack.cli_json("org", "create", "--name", "acme")
    one = stack.cli_json("input", "create", "--org", org["id"], "--name", "t", "--unit", "C")
    two = stack.cli_json("input", "create", "--org", org["id"], "--name", "p")
    asset = stack.cli_json(
        "asset",
        "create",
        "--org",
        org["id"],
        "--name",
        "truck",
        "--inputs",
        f"{one['id']},{two['id']}",
    )
    assert isinstance(asset["id"], int)
    with stack.http() as http:
        login = http.post("/auth/login/", json={"email": "ada@example.com", "password": PASSWORD})
    assert login.json()["user"]["has_devices"] is True
    assert login.json()["user"]["devices"][0]["display"] == "NodeMCU With ESP8266"


def _fresh_stack(tmp_path: Path) -> Stack:
    running = Stack(workdir=tmp_path, db_url=f"sqlite:///{tmp_path / 'tw.db'}")
    running.start()
    return running


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    running = _fresh_stack(tmp_path)
    assert running.stop(signal.SIGTERM) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(running.base_url + "/auth/user/", timeout=2)


def test_serve_exits_non_zero_when_envoy_dies(tmp_path: Path) -> None:
    running = _fresh_stack(tmp_path)
    envoy_pid = _child_pid(running, "envoy")
    os.kill(envoy_pid, signal.SIGKILL)
    assert running.process is not None
    code = running.process.wait(30)
    assert code != 0
    assert "envoy" in running.logs().lower()


@pytest.mark.parametrize(
    ("shared", "named"),
    [
        ("http_port", "gateway listen port"),
        ("grpc_port", "gRPC server port"),
        ("admin_port", "gateway admin port"),
    ],
)
def test_serve_refuses_a_taken_port(tmp_path: Path, shared: str, named: str) -> None:
    """Any of the three ports in use: one clear line, exit 1, nothing left half-running."""
    first = _fresh_stack(tmp_path / "a")
    try:
        second = Stack(workdir=tmp_path / "b", db_url=f"sqlite:///{tmp_path / 'b.db'}")
        setattr(second, shared, getattr(first, shared))
        with pytest.raises(RuntimeError, match="exited 1"):
            second.start()
        logs = second.logs()
        assert f"thingwire: error: {named}" in logs
        assert "already in use" in logs
        assert "Traceback" not in logs
        # The first stack still answers, and alone.
        assert first.cli_json("status")["status"] == "SERVING"
    finally:
        first.stop()


def _child_pid(running: Stack, name: str) -> int:
    assert running.process is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{running.process.pid}/task/{running.process.pid}/children")
        for pid in children.read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            if name in cmdline.decode():
                return int(pid)
        time.sleep(0.1)
    raise AssertionError(f"no {name} child of serve")


def test_status_probes_the_gateway(stack: Stack) -> None:
    assert stack.cli_json("status") == {
        "target": f"127.0.0.1:{stack.http_port}",
        "status": "SERVING",
    }


def test_status_of_a_stack_that_is_down(stack: Stack) -> None:
    result = stack.cli("status", "--target", f"127.0.0.1:{free_port()}", check=False)
    assert result.returncode != 0
    assert result.stderr.startswith("thingwire: error: health check failed: UNAVAILABLE")


def test_no_secret_is_stored_in_clear(stack: Stack, ada: dict) -> None:
    """Every secret the stack handed out or was given is absent from every table."""
    device = stack.cli_json(
        "device", "create", "--user", "ada", "--device", "vault", "--credentials", "Cr3dential$"
    )
    org = stack.cli_json("org", "create", "--name", "secrets-org")
    api = stack.cli_json("apitoken", "create", "--user", "ada", "--name", "vault")
    with stack.http() as http:
        login = http.post("/auth/login/", json={"email": "ada@example.com", "password": PASSWORD})
        grant = http.post(
            "/oauth/token",
            content=f"grant_type=password&username=ada&password={PASSWORD}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ).json()
    secrets = {
        PASSWORD,
        "Cr3dential$",
        device["push_token"],
        org["api_key"],
        api["token"],
        login.json()["token"],
        grant["refresh_token"],
    }
    database = Database(stack.db_url)
    try:
        with database.engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                for row in connection.execute(sa.select(table)):
                    text = " ".join(str(value) for value in row)
                    leaked = [s for s in secrets if s in text]
                    assert leaked == [], f"{table.name} stores a secret in clear"
    finally:
        database.dispose()


def test_a_killed_serve_takes_envoy_with_it(tmp_path: Path) -> None:
    running = _fresh_stack(tmp_path)
    envoy_pid = _child_pid(running, "envoy")
    assert running.process is not None
    running.process.kill()
    running.process.wait(10)
    deadline = time.monotonic() + 10
    while not _gone(envoy_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(envoy_pid), "Envoy outlived a killed serve"
    with pytest.raises(httpx.TransportError):
        httpx.get(running.base_url + "/auth/user/", timeout=2)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(errors="replace")
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def test_sigterm_under_load_answers_every_request_cleanly(tmp_path: Path) -> None:
    """Calls in flight finish; later ones are refused cleanly; serve exits 0."""
    running = _fresh_stack(tmp_path)
    running.cli("user", "create", "--email", "load@example.com", "--password", PASSWORD)
    outcomes: list[object] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=running.base_url, timeout=10) as http:
            while not stop.is_set():
                try:
                    answer = http.post(
                        "/auth/login/", json={"email": "load@example.com", "password": PASSWORD}
                    )
                except httpx.TransportError:
                    outcomes.append("refused")
                    return
                outcomes.append(answer.status_code)
                if answer.status_code != 200:
                    outcomes.append(answer.json())

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    assert running.stop(signal.SIGTERM) == 0
    stop.set()
    for thread in threads:
        thread.join(15)
    assert 200 in outcomes
    unexpected = [o for o in outcomes if o not in (200, 503, "refused") and not isinstance(o, dict)]
    assert unexpected == []
    assert all("detail" in o for o in outcomes if isinstance(o, dict))
