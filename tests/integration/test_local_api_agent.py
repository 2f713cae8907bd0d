"""`thingwire agent` serving its Local API: with the cloud away, and when its gateway dies."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.agents import AgentProcess
from tests.integration.stack import Stack
from tests.support import free_port

pytestmark = pytest.mark.integration

UNIT_ID = "5b0e1f6a-2a1c-4f5e-8d2b-7d3c9e6a1f00"


def offline_agent(tmp_path: Path, **options: object) -> AgentProcess:
    """An agent whose cloud never answers (nothing listens on its server port)."""
    return AgentProcess(
        Stack(workdir=tmp_path, db_url="sqlite:///unused.db"),  # only its workdir is used
        "ada",
        "dongle",
        "s3cret-credentials",
        server=f"127.0.0.1:{free_port()}",
        local_api=True,
        unit_id=UNIT_ID,
        **options,  # type: ignore[arg-type]
    )


def wait_answering(agent: AgentProcess, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        assert agent.process is not None
        assert agent.process.poll() is None, agent.stderr()
        try:
            return httpx.get(agent.local_url + "/", timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def envoy_child(agent: AgentProcess) -> int:
    assert agent.process is not None
    pid = agent.process.pid
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        if "envoy" in Path(f"/proc/{child}/cmdline").read_text():
            return int(child)
    raise AssertionError("no Envoy under the agent")


def test_the_local_api_answers_while_the_cloud_is_unreachable(tmp_path: Path) -> None:
    with offline_agent(tmp_path) as agent:
        assert wait_answering(agent).json() == {"unit_id": UNIT_ID}
        base = agent.local_url
        login = httpx.post(base + "/auth/login/", timeout=5)
        assert login.json()["user"]["devices"] == [{"unit_id": UNIT_ID, "display": "Local device"}]
        ping = httpx.post(
            f"{base}/dongle/{UNIT_ID}/execute/", json={"command": "test.ping"}, timeout=5
        )
        assert ping.status_code == 200, ping.text
        assert ping.json() is True
        syslog = httpx.get(base + "/download_log/?file=syslog", timeout=5)
        assert "agent starting" in syslog.text
        assert agent.process is not None
        assert agent.process.poll() is None
        assert agent.stop() == 0
    assert (agent.state_dir / "minion_id").read_text() == UNIT_ID


def test_the_agent_stops_with_a_message_when_its_gateway_dies(tmp_path: Path) -> None:
    with offline_agent(tmp_path) as agent:
        wait_answering(agent)
        # Envoy answers before the agent has seen it ready: kill it only once the agent
        # says its Local API is up (else start-up itself fails, a different message).
        agent.wait_for("Local API on http://")
        os.kill(envoy_child(agent), signal.SIGKILL)
        assert agent.wait_exit(15) == 1
        assert "device gateway (Envoy) exited unexpectedly" in agent.stderr()


def test_a_local_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        agent = offline_agent(tmp_path, local_port=taken.getsockname()[1])
        with agent:
            assert agent.wait_exit(15) == 1
        assert "the Local API cannot start" in agent.stderr()


def test_with_a_password_the_agent_wants_the_token(tmp_path: Path) -> None:
    agent = offline_agent(tmp_path, extra_env={"THINGWIRE_AGENT_LOCAL_PASSWORD": "pw-1234"})
    with agent:
        assert wait_answering(agent).status_code == 401
        login = httpx.post(agent.local_url + "/auth/login/", json={"password": "pw-1234"})
        token = login.json()["token"]
        answer = httpx.get(agent.local_url + "/", headers={"authorization": f"Bearer {token}"})
        assert answer.json() == {"unit_id": UNIT_ID}


def test_every_documented_command_request_through_a_real_agent(tmp_path: Path) -> None:
    """The document's requests, literally, against the real registry; then a restart."""
    networks = [
        {"ssid": "Network-1", "psk": "password1", "priority": 2},
        {"ssid": "Network-2", "psk": "password2", "priority": 1},
    ]
    apn = {"apn": "internet", "user": "user", "pass": "pass", "pin": "0000", "mtu": 1280}
    execute = f"/dongle/{UNIT_ID}/execute/"
    with offline_agent(tmp_path) as agent:
        wait_answering(agent)
        with httpx.Client(base_url=agent.local_url, timeout=15) as http:
            listing = http.post(
                execute, json={"command": "cmd.run", "arg": ["ls", "-l"], "kwarg": {}}
            )
            assert listing.status_code == 200, listing.text
            assert "log" in listing.json()  # the agent runs in its state directory
            raw = http.post(f"/dongle/{UNIT_ID}/execute_raw/", json={"command": "cmd.run ls -l"})
            assert raw.json().splitlines()[1:]
            assert "log" in raw.json()
            echoed = http.post(
                f"/dongle/{UNIT_ID}/execute_raw/", json={"command": "cmd.run echo a  b"}
            )
            assert echoed.json() == "a b"
            literal = http.post(
                execute, json={"command": "cmd.run", "arg": ["echo", "$(id); rm -rf /"]}
            )
            assert literal.json() == "$(id); rm -rf /"
            slow = http.post(
                execute,
                json={"command": "cmd.run", "arg": ["sleep", "5"], "kwarg": {"timeout": 0.5}},
            )
            assert slow.status_code == 504, slow.text
            saved = http.post(
                execute,
                json={
                    "command": "grains.set",
                    "arg": ["wpa_supplicant:networks", networks],
                    "kwarg": {"destructive": True, "force": True},
                },
            )
            assert saved.status_code == 200, saved.text
            assert saved.json()["result"] is True
            applied = http.post(
                execute,
                json={"command": "state.sls", "arg": ["network.wlan.client.config"], "kwarg": {}},
            )
            assert applied.status_code == 200, applied.text
            assert all(state["result"] is True for state in applied.json().values())
            assert http.put(f"/dongle/{UNIT_ID}/settings/apn/", json=apn).json() == apn
            modem = http.post(
                execute,
                json={"command": "state.sls", "arg": ["network.wwan.qmi.config"], "kwarg": {}},
            )
            assert all(state["result"] is True for state in modem.json().values()), modem.text
            unknown = http.post(execute, json={"command": "foo.bar"})
            assert unknown.status_code == 400
            minion = http.get("/download_log/?file=salt/minion")
            assert minion.status_code == 200
            assert "grains.set" in minion.text
        assert agent.stop() == 0
    rendered = (agent.state_dir / "rendered" / "wpa_supplicant.conf").read_text()
    assert rendered.index('ssid="Network-1"') < rendered.index('ssid="Network-2"')
    assert "APN='internet'" in (agent.state_dir / "rendered" / "qmi-network.conf").read_text()
    restarted = offline_agent(tmp_path)
    with restarted:
        wait_answering(restarted)
        with httpx.Client(base_url=restarted.local_url, timeout=15) as http:
            assert http.get(f"/dongle/{UNIT_ID}/settings/apn/").json() == apn
            got = http.post(
                execute, json={"command": "grains.get", "arg": ["wpa_supplicant:networks"]}
            )
            assert got.json() == networks


def test_the_vehicle_answers_on_the_local_api_with_the_cloud_away(tmp_path: Path) -> None:
    """A dongle in a car park without coverage: the simulated car is still read, and
    `obd.query`, `obd.dtc` and `obd.status` answer on the device (docs/vehicle.md)."""
    with offline_agent(tmp_path, simulate=True) as agent:
        wait_answering(agent)
        execute = f"{agent.local_url}/dongle/{UNIT_ID}/execute/"
        deadline = time.monotonic() + 30
        while True:
            status = httpx.post(execute, json={"command": "obd.status"}, timeout=5)
            assert status.status_code == 200, status.text
            if status.json()["readings"] > 0:
                break
            assert time.monotonic() < deadline, status.text
            time.sleep(0.2)
        assert status.json()["ecus"] == ["0x7E8", "0x7E9"]
        speed = httpx.post(execute, json={"command": "obd.query", "arg": ["0x0D"]}, timeout=5)
        assert speed.status_code == 200, speed.text
        assert speed.json()["name"] == "speed"
        assert speed.json()["unit"] == "km/h"
        unknown = httpx.post(execute, json={"command": "obd.query", "arg": ["warp"]}, timeout=5)
        assert unknown.status_code == 400, unknown.text
        assert "unknown PID" in unknown.json()["error"]
        codes = httpx.post(execute, json={"command": "obd.dtc"}, timeout=5)
        assert codes.json() == []
