"""`thingwire agent` as a real process, linked through the real Envoy to `thingwire serve`.

The agent's log says when a link opens; exit codes and its last stderr line say why it
stopped. The server restart comes last: it stops and starts the module's stack.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.integration.agents import AgentProcess
from tests.integration.stack import Stack
from tests.support import free_port

pytestmark = pytest.mark.integration

CREDENTIALS = "agent-process-s3cret"
SIMULATED = "resources: location, temperature, relay, rgb, command, io, reset"
#: What the agent logs when a GoAway arrives (device_agent/agent.py).
GOING_AWAY = re.compile(r"server going away \(the server is shutting down\): back in ([\d.]+) s")


def make_device(stack: Stack, name: str) -> str:
    stack.cli("device", "create", "--user", "ada", "--device", name, "--credentials", CREDENTIALS)
    return name


def agent(stack: Stack, device: str, **options: object) -> AgentProcess:
    return AgentProcess(stack, "ada", device, CREDENTIALS, **options)  # type: ignore[arg-type]


def test_an_agent_connects_through_the_gateway_and_sigterm_ends_it(stack: Stack, ada: dict) -> None:
    device = make_device(stack, "proc_simulated")
    with agent(stack, device, simulate=True) as running:
        running.wait_connected()
        started = time.monotonic()
        code = running.stop()
        took = time.monotonic() - started
    assert code == 0, running.stderr()
    assert took < 5
    log = running.log()
    assert SIMULATED in log
    assert f"link open as ada/{device}" in log
    assert log.rstrip().endswith("stopped on signal; the link is closed")
    # The log goes to stderr too.
    assert f"link open as ada/{device}" in running.stderr()


def test_an_agent_without_resources_keeps_its_link(stack: Stack, ada: dict) -> None:
    device = make_device(stack, "proc_bare")
    with agent(stack, device) as running:
        running.wait_connected()
        assert "resources: none" in running.log()
        assert running.stop(signal.SIGINT) == 0


def test_wrong_credentials_end_the_agent_with_one_clear_line(stack: Stack, ada: dict) -> None:
    device = make_device(stack, "proc_wrong")
    with AgentProcess(stack, "ada", device, "not-the-credentials") as running:
        code = running.wait_exit()
    assert code == 1
    assert running.stderr().splitlines()[-1] == (
        "thingwire: error: the server refused the link: invalid device credentials "
        "(UNAUTHENTICATED)"
    )
    assert running.connections() == 0


def test_an_agent_replaced_by_a_newer_one_exits(stack: Stack, ada: dict) -> None:
    device = make_device(stack, "proc_twice")
    with agent(stack, device) as first:
        first.wait_connected()
        with agent(stack, device, name=f"{device}_newer") as second:
            code = first.wait_exit()
            second.wait_connected()
    assert code == 1
    assert first.stderr().splitlines()[-1] == (
        "thingwire: error: the server refused the link: replaced by a newer connection "
        "of the same device (FAILED_PRECONDITION)"
    )


def test_a_killed_agent_started_again_connects_again(stack: Stack, ada: dict) -> None:
    device = make_device(stack, "proc_killed")
    with agent(stack, device) as running:
        running.wait_connected()
        assert running.kill() == -signal.SIGKILL
    with agent(stack, device) as again:
        again.wait_connected(count=2)  # the same log file: its second "link open"
        assert again.stop() == 0


def test_a_paused_agent_resumes_on_its_link(stack: Stack, ada: dict) -> None:
    """SIGSTOP for a moment, then SIGCONT: the process carries on; SIGTERM still ends it."""
    device = make_device(stack, "proc_paused")
    with agent(stack, device) as running:
        running.wait_connected()
        running.pause()
        time.sleep(0.5)
        running.resume()
        assert running.stop() == 0
    assert running.connections() == 1


def test_an_agent_keeps_trying_while_the_server_is_down(stack: Stack, ada: dict) -> None:
    """Nothing listens on its port: it backs off and retries until stopped."""
    with agent(stack, "proc_nowhere", server=f"127.0.0.1:{free_port()}") as running:
        running.wait_for("reconnecting in", count=3)
        assert running.process is not None
        assert running.process.poll() is None
        assert "link lost (UNAVAILABLE" in running.log()
        assert running.stop() == 0


def test_agents_come_back_by_themselves_after_a_server_restart(stack: Stack, ada: dict) -> None:
    """A graceful stop sends each agent away with its own delay within the window (5 s);
    once the server is back they reconnect without help, within seconds, and answer calls
    (a token issued before the restart still works: the signing keys are in the key file)."""
    names = [make_device(stack, f"proc_restart_{n}") for n in range(3)]
    agents = [agent(stack, name, simulate=True).start() for name in names]
    token = stack.thinger_token("ada")
    try:
        for running in agents:
            running.wait_connected()
        assert stack.stop() == 0
        back_up = None
        try:
            for running in agents:
                running.wait_for("server going away")
                assert running.process is not None
                assert running.process.poll() is None  # the agent outlives the server
        finally:
            stack.start()
            back_up = time.monotonic()
        for running in agents:
            running.wait_connected(count=2)
        waited = time.monotonic() - back_up
        with stack.http() as http:
            answers = [
                http.post(
                    f"/v2/users/ada/devices/{name}/io",
                    json={"in": {"value1": n, "value2": 2}},
                    headers={"Authorization": f"Bearer {token}"},
                )
                for n, name in enumerate(names)
            ]
        assert [(a.status_code, a.json()) for a in answers] == [
            (200, {"out": {"sum": n + 2, "mult": n * 2}}) for n in range(len(names))
        ]
        delays = [float(GOING_AWAY.findall(running.log())[0]) for running in agents]
        for running in agents:
            assert running.stop() == 0
    finally:
        for running in agents:
            running.__exit__()
    assert all(0 <= delay <= 5.0 for delay in delays), delays
    assert len(set(delays)) > 1, delays  # spread over the window, not one burst
    # Backoff after the GoAway is capped; within a few seconds of the server coming back.
    assert waited < 15, waited
