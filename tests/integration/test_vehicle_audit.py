"""Audit: `thingwire agent` with a vehicle configuration it cannot use exits 1 at start with
one line naming the variable (docs/vehicle.md, "Broadcast signals": "refused at start,
naming the variable"), as it does for THINGWIRE_AGENT_OBD_PIDS; no server is needed to see
it, so none runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.stack import THINGWIRE
from tests.support import free_port

pytestmark = pytest.mark.integration
#: Long enough for the agent to start and refuse, far shorter than its bus retries.
START_TIMEOUT_S = 8


def agent(tmp_path: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """Run the agent against a port where nothing listens: its exit code (None if it was
    still running after START_TIMEOUT_S) and its stderr."""
    command = [
        str(THINGWIRE), "agent", "--server", f"127.0.0.1:{free_port()}",
        "--user", "ada", "--device", "car", "--credentials", "c", "--no-local-api",
    ]  # fmt: skip
    full_env = {**os.environ, "THINGWIRE_AGENT_STATE_DIR": str(tmp_path / "state"), **env}
    with subprocess.Popen(
        command, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        try:
            _, err = process.communicate(timeout=START_TIMEOUT_S)
            return process.returncode, err
        except subprocess.TimeoutExpired:
            process.terminate()
            _, err = process.communicate(timeout=10)
            return None, err


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_dbc_it_cannot_load_stops_the_agent_at_start(tmp_path: Path, kind: str) -> None:
    dbc = tmp_path / "car.dbc"
    if kind == "directory":
        dbc.mkdir()
    code, err = agent(
        tmp_path,
        {
            "THINGWIRE_AGENT_CAN_INTERFACE": "virtual",
            "THINGWIRE_AGENT_CAN_CHANNEL": f"audit-{tmp_path.name}",
            "THINGWIRE_AGENT_CAN_DBC": str(dbc),
            "THINGWIRE_AGENT_CAN_SIGNALS": "EngineSpeed",
        },
    )
    assert code == 1, f"exit code {code}; stderr:\n{err[-2000:]}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "THINGWIRE_AGENT_CAN_DBC" in lines[0]
    assert "Traceback" not in err
