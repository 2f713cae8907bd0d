"""The built wheel works outside the checkout, and the device side installs without the cloud's.

Each virtualenv is new and holds only what the wheel declares (see `install.py`); commands run
from a directory outside the checkout, so nothing is found beside the sources by accident.
"""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.integration.agents import AgentProcess
from tests.integration.stack import Stack
from tests.packaging.install import ROOT, build_wheel, closure, fresh_venv, wheel_requirements

pytestmark = pytest.mark.packaging

#: What only the cloud needs; a device must not have to install any of it.
CLOUD_ONLY = {"sqlalchemy", "alembic", "psycopg", "psycopg-binary", "argon2-cffi", "pyjwt"}
PASSWORD = "s3cret-Passw0rd"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def _venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path, extra: str) -> Path:
    dists = closure(wheel_requirements(wheel, {extra}))
    return fresh_venv(tmp_path_factory.mktemp(f"venv-{extra}") / "venv", dists, wheel)


@pytest.fixture(scope="module")
def agent_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh install with the `agent` extra only (shared by the module)."""
    return _venv(tmp_path_factory, wheel, "agent")


def _run(python: Path, code: str, cwd: Path) -> str:
    result = subprocess.run(
        [python, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_wheel_ships_the_descriptor_image_and_every_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "thingwire/thingwire.binpb" in names
    assert "server/services/__init__.py" in names
    assert "gateway/filters.lua" in names
    assert "thingwire_cli/main.py" in names
    assert "server/migrations/script.py.mako" in names
    assert "server/migrations/versions/0001_initial.py" in names


def test_every_source_package_has_an_init() -> None:
    """A directory of modules without `__init__.py` is a namespace package: setuptools'
    `packages.find` may leave it out of the wheel, and mypy resolves it differently."""
    missing = [
        str(directory.relative_to(ROOT))
        for top in ("server", "gateway", "device_agent", "thingwire_cli")
        for directory in [ROOT / top, *(ROOT / top).rglob("*")]
        if directory.is_dir()
        and directory.name != "__pycache__"
        and any(directory.glob("*.py"))
        and not (directory / "__init__.py").is_file()
    ]
    assert missing == []


def test_serve_runs_from_the_installed_wheel(
    wheel: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """`thingwire serve` of a fresh install, in an empty directory, with the default database."""
    python = _venv(tmp_path_factory, wheel, "server")
    imported_from = _run(python, "import server; print(server.__file__)", tmp_path)
    assert imported_from.startswith(str(python.parent.parent)), imported_from
    stack = Stack(
        workdir=tmp_path,
        db_url=f"sqlite:///{tmp_path / 'var' / 'thingwire.db'}",
        executable=python.with_name("thingwire"),
    )
    stack.cli_json("user", "create", "--email", "ada@example.com", "--password", PASSWORD)
    stack.start()
    try:
        assert stack.cli("status", "--target", stack.grpc_target).returncode == 0
        with stack.http() as http:
            credentials = {"email": "ada@example.com", "password": PASSWORD}
            login = http.post("/auth/login/", json=credentials)
            assert login.status_code == 200, login.text
            token = login.json()["token"]
            me = http.get("/auth/user/", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["email"] == "ada@example.com"
            unknown = http.get("/no/such/path")
            assert unknown.status_code == 404
            assert unknown.json() == {"detail": "no such endpoint: GET /no/such/path"}
    finally:
        assert stack.stop() == 0, stack.logs()


def test_the_agent_extra_needs_nothing_of_the_cloud(wheel: Path) -> None:
    needed = closure(wheel_requirements(wheel, {"agent"}))
    assert CLOUD_ONLY & set(needed) == set()


def test_the_device_side_imports_from_the_agent_install(agent_python: Path, tmp_path: Path) -> None:
    """The agent, the gateway and every generated stub import without the cloud's packages."""
    python = agent_python
    code = """
import importlib, importlib.util, pkgutil
import thingwire, device_agent, device_agent.agent, gateway.config, gateway.launcher
for module in pkgutil.walk_packages(thingwire.__path__, "thingwire."):
    importlib.import_module(module.name)
gateway.launcher.find_envoy()
print(sorted(m for m in ("sqlalchemy", "alembic", "psycopg", "argon2", "jwt")
             if importlib.util.find_spec(m)))
"""
    assert _run(python, code, tmp_path).strip() == "[]"


def _command(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python.with_name("thingwire"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_agent_command_runs_from_the_agent_install(agent_python: Path, tmp_path: Path) -> None:
    """`thingwire agent` needs nothing of the cloud; the cloud's commands say what to install."""
    agent_help = _command(agent_python, "agent", "--help", cwd=tmp_path)
    assert agent_help.returncode == 0, agent_help.stderr
    assert agent_help.stdout.startswith("usage: thingwire agent [-h] --server HOST:PORT")
    overview = _command(agent_python, "--help", cwd=tmp_path)
    assert overview.returncode == 0, overview.stderr
    assert "need `thingwire[server]`" in overview.stdout
    serve = _command(agent_python, "serve", cwd=tmp_path)
    assert serve.returncode == 1
    # The first of the cloud's modules that server.cli imports is the one named.
    assert re.fullmatch(
        r"thingwire: error: 'serve' is a cloud command and this install has the device side "
        r"only \(no module '\w+'\): install thingwire\[server\]\n",
        serve.stderr,
    ), serve.stderr
    code = """
import sys
import device_agent.cli, device_agent.simulated, thingwire_cli.main
print(sorted(m for m in ("sqlalchemy", "server.cli", "argon2") if m in sys.modules))
"""
    assert _run(agent_python, code, tmp_path).strip() == "[]"


def test_an_agent_install_links_to_a_running_stack(agent_python: Path, tmp_path: Path) -> None:
    """The agent of a device-only install, against the development install's stack."""
    stack = Stack(workdir=tmp_path / "cloud", db_url=f"sqlite:///{tmp_path / 'cloud.db'}")
    stack.start()
    try:
        stack.cli("user", "create", "--email", "ada@example.com", "--password", PASSWORD)
        stack.cli("device", "create", "--user", "ada", "--device", "pkg", "--credentials", "c-1")
        agent = AgentProcess(
            stack,
            "ada",
            "pkg",
            "c-1",
            simulate=True,
            executable=agent_python.with_name("thingwire"),
        )
        with agent:
            agent.wait_connected()
            assert agent.stop() == 0, agent.stderr()
    finally:
        assert stack.stop() == 0, stack.logs()
