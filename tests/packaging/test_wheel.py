"""The built wheel works outside the checkout, and the device side installs without the cloud's.

Each virtualenv is new and holds only what the wheel declares (see `install.py`); commands run
from a directory outside the checkout, so nothing is found beside the sources by accident.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

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
    assert "server/migrations/script.py.mako" in names
    assert "server/migrations/versions/0001_initial.py" in names


def test_every_source_package_has_an_init() -> None:
    """A directory of modules without `__init__.py` is a namespace package: setuptools'
    `packages.find` may leave it out of the wheel, and mypy resolves it differently."""
    missing = [
        str(directory.relative_to(ROOT))
        for top in ("server", "gateway", "device_agent")
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


def test_the_device_side_imports_from_the_agent_install(
    wheel: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The agent, the gateway and every generated stub import without the cloud's packages."""
    python = _venv(tmp_path_factory, wheel, "agent")
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
