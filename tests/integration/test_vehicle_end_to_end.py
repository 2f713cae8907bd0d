"""`thingwire agent --simulate` linked to `thingwire serve`: the simulated ECU's readings
reach the logbook within seconds, and the `obd` resource and `obd.query` answer current
values through the cloud (docs/vehicle.md, "In the agent")."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.agents import AgentProcess
from tests.integration.conftest import PASSWORD
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration


def test_the_simulated_vehicle_is_read_through_the_cloud(stack: Stack, ada: dict) -> None:
    car = stack.cli_json(
        "device", "create", "--user", "ada", "--device", "obdcar", "--credentials", "obd-c"
    )
    thinger = {"Authorization": f"Bearer {stack.thinger_token('ada')}"}
    agent = AgentProcess(
        stack,
        "ada",
        "obdcar",
        "obd-c",
        simulate=True,
        extra_env={"THINGWIRE_AGENT_OBD_PIDS": "rpm=0.5,speed=0.5,control_module_voltage=0.5"},
    )
    with agent, stack.http() as http:
        agent.wait_connected()
        login = http.post("/auth/login/", json={"email": ada["email"], "password": PASSWORD})
        jwt = {"Authorization": f"Bearer {login.json()['token']}"}
        start = datetime.now(UTC) - timedelta(minutes=1)
        params = {
            "device_id": car["unit_id"],
            "field": "obd.rpm.value",
            "from_utc": start.isoformat(),
            "to_utc": (start + timedelta(minutes=10)).isoformat(),
        }
        deadline = time.monotonic() + 30
        while True:
            rpm = http.get("/logbook/storage/read/", params=params, headers=jwt)
            assert rpm.status_code == 200, rpm.text
            if rpm.json():
                break
            assert time.monotonic() < deadline, "no obd.rpm reading reached the logbook"
            time.sleep(0.5)
        assert all(point["value"] > 0 for point in rpm.json())
        voltage = http.get(
            "/logbook/storage/read/", params={**params, "field": "obd.bat.voltage"}, headers=jwt
        )
        assert voltage.json(), voltage.text
        assert all(12.0 < point["value"] < 15.0 for point in voltage.json())
        # the simulated drive: positions along its route, moving within a few seconds
        geo = {**params, "field": "track.pos.loc", "field_type": "geo_point"}
        while True:
            positions = http.get("/logbook/storage/read/", params=geo, headers=jwt).json()
            places = {(p["location"]["lat"], p["location"]["lon"]) for p in positions}
            if len(places) >= 2:
                break
            assert time.monotonic() < deadline, f"the car did not move: {positions}"
            time.sleep(0.5)
        assert all(abs(lat - 57.02) < 0.05 and abs(lon - 9.9) < 0.05 for lat, lon in places)
        power = http.get(
            "/logbook/storage/read/",
            params={**params, "field": "event.system.power.trigger", "field_type": "string"},
            headers=jwt,
        )
        assert [point["value"] for point in power.json()] == ["stn"], power.text
        current = http.get("/v2/users/ada/devices/obdcar/obd", headers=thinger)
        assert current.status_code == 200, current.text
        assert {"rpm", "speed", "control_module_voltage"} <= set(current.json()["out"])
        query = http.post(
            f"/dongle/{car['unit_id']}/execute/",
            json={"command": "obd.query", "arg": ["rpm"]},
            headers=jwt,
        )
        assert query.status_code == 200, query.text
        assert query.json()["name"] == "rpm"
        assert query.json()["value"] > 0
        assert (
            http.post(
                f"/dongle/{car['unit_id']}/execute/", json={"command": "obd.dtc"}, headers=jwt
            ).json()
            == []
        )
        status = http.post(
            f"/dongle/{car['unit_id']}/execute/", json={"command": "obd.status"}, headers=jwt
        )
        assert status.status_code == 200, status.text
        assert status.json()["ecus"] == ["0x7E8", "0x7E9"]
        assert status.json()["vin"] == "WP0ZZZ99ZTS392124"
        assert agent.stop() == 0
