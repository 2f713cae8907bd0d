"""The cloud's relay of the Local API's `execute/` and `execute_raw/`, through the real
Envoy to a real agent process, with an HTTP client as a REST caller would.

The agent is `tests/integration/command_agent_process.py`: `thingwire agent` with a test
`CommandRunner` (`test.echo`, `test.true`, `test.sleep`, ...). The stack's call deadline is
short, so that a slow command gives its 504 quickly. Errors are the AutoPi cloud's
`{"detail": "..."}`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.agents import AgentProcess
from tests.integration.stack import Stack, stack_fixture

pytestmark = pytest.mark.integration

CALL_TIMEOUT_S = 2.0
NOT_FOUND = {"detail": "Not found."}

stack = stack_fixture(THINGWIRE_RESOURCE_CALL_TIMEOUT_S=str(CALL_TIMEOUT_S))


class CommandAgentProcess(AgentProcess):
    """`AgentProcess` running the agent with the test runner."""

    def command(self) -> list[str]:
        program = [sys.executable, "-m", "tests.integration.command_agent_process"]
        return [*program, *super().command()[3:]]


@pytest.fixture(scope="module")
def world(stack: Stack, ada: dict, bob: dict) -> Iterator[dict[str, str]]:
    """Ada's linked `car`, her `parked` device (never connected), bob's `van`, and an API
    token of each user."""
    car = stack.cli_json(
        "device", "create", "--user", "ada", "--device", "car", "--credentials", "car-c"
    )
    parked = stack.cli_json(
        "device", "create", "--user", "ada", "--device", "parked", "--credentials", "parked-c"
    )
    van = stack.cli_json(
        "device", "create", "--user", "bob", "--device", "van", "--credentials", "van-c"
    )
    # `test_resources` only makes the checkout importable for the test program.
    agent = CommandAgentProcess(stack, "ada", "car", "car-c", test_resources=True)
    agent.start()
    try:
        agent.wait_connected()
        yield {
            "syslog": str(agent.syslog),
            "car": car["unit_id"],
            "parked": parked["unit_id"],
            "van": van["unit_id"],
            "ada": stack.cli_json("apitoken", "create", "--user", "ada", "--name", "relay")[
                "token"
            ],
            "bob": stack.cli_json("apitoken", "create", "--user", "bob", "--name", "relay")[
                "token"
            ],
        }
    finally:
        agent.stop()


def post(stack: Stack, path: str, token: str | None, **kwargs: object) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"APIToken {token}"
    with stack.http() as http:
        return http.post(path, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("slash", ["/", ""])
def test_execute_and_execute_raw_answer_the_commands_result(
    stack: Stack, world: dict[str, str], slash: str
) -> None:
    base = f"/dongle/{world['car']}"
    echoed = post(
        stack,
        f"{base}/execute{slash}",
        world["ada"],
        json={"command": "test.echo", "arg": ["ls", "-l"], "kwarg": {"force": True}},
    )
    assert echoed.status_code == 200, echoed.text
    assert echoed.headers["content-type"] == "application/json"
    assert echoed.json() == {"args": ["ls", "-l"], "kwargs": {"force": True}}
    raw = post(stack, f"{base}/execute_raw{slash}", world["ada"], json={"command": "cmd.run ls -l"})
    assert raw.status_code == 200, raw.text
    assert raw.json() == {"line": "cmd.run ls -l"}


def test_any_json_value_comes_back_as_it_is(stack: Stack, world: dict[str, str]) -> None:
    path = f"/dongle/{world['car']}/execute/"
    true = post(stack, path, world["ada"], json={"command": "test.true"})
    assert (true.status_code, true.content) == (200, b"true")
    text = post(stack, path, world["ada"], json={"command": "test.string", "arg": []})
    assert (text.status_code, text.json()) == (200, "total 0\n")
    bare = post(stack, path, world["ada"], json={"command": "test.echo"})
    assert bare.json() == {"args": [], "kwargs": {}}


def test_a_unit_id_that_is_not_the_callers_is_not_found(
    stack: Stack, world: dict[str, str]
) -> None:
    body = {"command": "test.true"}
    for unit_id, token in (
        (world["van"], world["ada"]),  # bob's device
        (world["car"], world["bob"]),  # ada's device, asked by bob
        ("00000000-0000-4000-8000-000000000000", world["ada"]),  # no device
        ("car", world["ada"]),  # a device id is not a unit id
    ):
        for path in (f"/dongle/{unit_id}/execute/", f"/dongle/{unit_id}/execute_raw/"):
            answer = post(stack, path, token, json=body)
            assert (answer.status_code, answer.json()) == (404, NOT_FOUND), (path, answer.text)


def test_an_offline_device_is_not_found_and_no_credentials_are_refused(
    stack: Stack, world: dict[str, str]
) -> None:
    offline = post(
        stack, f"/dongle/{world['parked']}/execute/", world["ada"], json={"command": "test.true"}
    )
    assert offline.status_code == 404
    assert offline.json() == {"detail": "device 'parked' is not connected"}
    anonymous = post(stack, f"/dongle/{world['car']}/execute/", None, json={"command": "x"})
    assert anonymous.status_code == 401
    assert set(anonymous.json()) == {"detail"}


def test_a_slow_command_is_a_504(stack: Stack, world: dict[str, str]) -> None:
    path = f"/dongle/{world['car']}/execute/"
    begun = time.monotonic()
    slow = post(stack, path, world["ada"], json={"command": "test.sleep"})
    waited = time.monotonic() - begun
    assert slow.status_code == 504
    assert slow.json() == {"detail": "device 'car' did not answer in time"}
    assert CALL_TIMEOUT_S - 0.2 < waited < CALL_TIMEOUT_S + 5
    # The device was told to stop the command, and carries on.
    deadline = time.monotonic() + 10
    while "command cancelled" not in Path(world["syslog"]).read_text(errors="replace"):
        assert time.monotonic() < deadline, "the agent never cancelled the command"
        time.sleep(0.05)
    after = post(stack, path, world["ada"], json={"command": "test.true"})
    assert after.content == b"true"


def test_the_devices_refusal_and_crash_keep_their_status(
    stack: Stack, world: dict[str, str]
) -> None:
    path = f"/dongle/{world['car']}/execute/"
    refused = post(stack, path, world["ada"], json={"command": "nope.nothing"})
    assert (refused.status_code, refused.json()) == (
        400,
        {"detail": "'nope.nothing' is not available"},
    )
    crashed = post(stack, path, world["ada"], json={"command": "test.crash"})
    assert (crashed.status_code, crashed.json()) == (
        502,
        {"detail": "the command failed on the device: RuntimeError: boom"},
    )


@pytest.mark.parametrize(
    ("suffix", "content", "message"),
    [
        ("execute/", b"{not json", "the body must be valid JSON"),
        ("execute/", b"", "the body must be valid JSON"),
        ("execute/", b"[]", "a command list starts with the command's name"),
        ("execute/", b'{"command": 1}', "command must be a non-empty string"),
        ("execute/", b'{"command": "test.echo", "kwarg": [1]}', "kwarg must be a JSON object"),
        ("execute/", b'{"command": "test.echo", "extra": 1}', "unknown key 'extra'"),
        ("execute_raw/", b'{"command": ["cmd.run", "ls"]}', "command must be a non-empty"),
        ("execute_raw/", b"nope", "the body must be valid JSON"),
    ],
)
def test_bad_bodies_are_400_with_a_message(
    stack: Stack, world: dict[str, str], suffix: str, content: bytes, message: str
) -> None:
    answer = post(stack, f"/dongle/{world['car']}/{suffix}", world["ada"], content=content)
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(message), detail
    assert set(answer.json()) == {"detail"}


def test_a_real_agent_answers_the_cloud_as_its_local_api_does(
    stack: Stack, world: dict[str, str]
) -> None:
    """`thingwire agent` itself (its real registry): the same request through the cloud's
    gateway and through the device's own Local API gives the same answer."""
    unit = stack.cli_json(
        "device", "create", "--user", "ada", "--device", "dongle", "--credentials", "dongle-c"
    )["unit_id"]
    agent = AgentProcess(stack, "ada", "dongle", "dongle-c", local_api=True, unit_id=unit)
    requests = [
        ("execute/", {"command": "test.ping"}),
        ("execute/", {"command": "cmd.run", "arg": ["echo", "$(id); a  b"], "kwarg": {}}),
        ("execute/", {"command": "grains.setval", "arg": ["relay:seen", 1]}),
        ("execute/", {"command": "grains.get", "arg": ["relay:seen"]}),
        ("execute_raw/", {"command": "cmd.run echo hello"}),
        ("execute/", {"command": "nope.nothing"}),
    ]
    with agent:
        agent.wait_connected()
        with httpx.Client(base_url=agent.local_url, timeout=15) as local:
            for suffix, body in requests:
                cloud = post(stack, f"/dongle/{unit}/{suffix}", world["ada"], json=body)
                device = local.post(f"/dongle/{unit}/{suffix}", json=body)
                assert cloud.status_code == device.status_code, (body, cloud.text, device.text)
                if device.status_code == 200:
                    assert cloud.json() == device.json(), body
                else:  # each face in its own family's shape, the same message
                    assert cloud.json() == {"detail": device.json()["error"]}, body
        assert agent.stop() == 0


def test_an_agent_without_a_unit_id_learns_the_clouds_from_its_welcome(
    stack: Stack, world: dict[str, str]
) -> None:
    unit = stack.cli_json(
        "device", "create", "--user", "ada", "--device", "learner", "--credentials", "learner-c"
    )["unit_id"]
    agent = AgentProcess(stack, "ada", "learner", "learner-c", local_api=True)
    with agent:
        agent.wait_connected()
        deadline = time.monotonic() + 10
        while httpx.get(agent.local_url + "/", timeout=5).json() != {"unit_id": unit}:
            assert time.monotonic() < deadline, "the Local API never answered the cloud's id"
            time.sleep(0.1)
        assert (agent.state_dir / "minion_id").read_text() == unit
        ping = httpx.post(
            f"{agent.local_url}/dongle/{unit}/execute/", json={"command": "test.ping"}
        )
        assert ping.json() is True
        assert agent.stop() == 0
