"""`thingwire agent` in-process: its arguments, settings, signals and refusals, and the entry
point that sends it to the device side. The real processes are in tests/integration."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from device_agent import cli as agent_cli
from device_agent.channel import keepalive_options
from device_agent.config import AgentConfigError, AgentSettings
from tests.link.conftest import CREDENTIALS, DEVICE, USER, LinkWorld, connected, stopped
from tests.link.test_device_token_link import issue
from thingwire_cli import main as entry


@pytest.mark.parametrize("value", ["127.0.0.1:8080", "cloud.example.com:443", "[::1]:8080"])
def test_a_server_address_is_host_and_port(value: str) -> None:
    assert agent_cli.server_address(value) == value


@pytest.mark.parametrize("value", ["127.0.0.1", ":8080", "host:", "host:http", "host:0", "h:65536"])
def test_a_server_address_without_a_usable_port_is_refused(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not HOST:PORT"):
        agent_cli.server_address(value)


def test_the_state_dir_comes_from_the_environment() -> None:
    assert AgentSettings.from_env({}).log_dir == Path("var/agent/log")
    settings = AgentSettings.from_env({"THINGWIRE_AGENT_STATE_DIR": "/srv/agent"})
    assert settings.log_dir == Path("/srv/agent/log")


def test_the_agent_needs_its_four_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        agent_cli.main(["--server", "127.0.0.1:8080", "--user", "ada"])
    assert info.value.code == 2
    assert "the following arguments are required: --device" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        agent_cli.main(["--server", "127.0.0.1:8080", "--user", "ada", "--device", "d"])
    assert info.value.code == 2
    assert "one of the arguments --credentials --token is required" in capsys.readouterr().err


def test_the_agent_takes_credentials_or_a_token_not_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        agent_cli.main(
            [
                *("--server", "127.0.0.1:8080", "--user", "ada", "--device", "d"),
                *("--credentials", "c", "--token", "t"),
            ]
        )
    assert info.value.code == 2
    assert "argument --token: not allowed with argument --credentials" in (capsys.readouterr().err)


def test_the_entry_point_sends_agent_to_the_device_side(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        entry.main(["agent", "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: thingwire agent [-h] --server HOST:PORT")


def test_the_cloud_help_lists_the_agent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        entry.main(["--help"])
    out = capsys.readouterr().out
    assert "agent" in out
    assert "serve" in out


def test_a_device_only_install_says_what_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.device_only(["--help"], "sqlalchemy") == 0
    assert "need `thingwire[server]`" in capsys.readouterr().out
    assert entry.device_only([], "sqlalchemy") == 2
    assert entry.device_only(["serve"], "sqlalchemy") == 1
    assert capsys.readouterr().err == (
        "thingwire: error: 'serve' is a cloud command and this install has the device side "
        "only (no module 'sqlalchemy'): install thingwire[server]\n"
    )


def _args(world: LinkWorld, credentials: str = CREDENTIALS, simulate: bool = False) -> list[str]:
    return [
        *("--server", world.target, "--user", USER, "--device", DEVICE),
        *("--credentials", credentials),
        *(["--simulate"] if simulate else []),
    ]


def test_sigterm_closes_the_link_and_exits_0(world: LinkWorld) -> None:
    """The real signal handler, on a loop in the main thread (the server runs on its own)."""
    agent = agent_cli.build_agent(agent_cli.build_parser().parse_args(_args(world, simulate=True)))

    async def scenario() -> int:
        async def terminate_once_connected() -> None:
            await agent.connected.wait()
            os.kill(os.getpid(), signal.SIGTERM)

        killer = asyncio.create_task(terminate_once_connected())
        code = await asyncio.wait_for(agent_cli.run_agent(agent, world.target), 30)
        await killer
        return code

    assert asyncio.run(scenario()) == 0
    assert agent.connections == 1
    assert len(agent.resources) == 7
    # The server saw the stream end: the device is offline again.
    assert world.run(lambda: _offline(world))


async def _offline(world: LinkWorld) -> bool:
    """True once the server holds no link for the device (within a few seconds)."""
    for _ in range(200):
        if world.running.state.links.get(world.key) is None:
            return True
        await asyncio.sleep(0.02)
    return False


def test_a_refused_link_exits_1_with_one_line(
    world: LinkWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = agent_cli.build_agent(agent_cli.build_parser().parse_args(_args(world, "wrong")))
    code = asyncio.run(asyncio.wait_for(agent_cli.run_agent(agent, world.target), 30))
    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "thingwire: error: the server refused the link: invalid device credentials "
        "(UNAUTHENTICATED)"
    )
    assert agent.resources == ()


def test_the_commands_channel_pings_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without keepalive a quiet link that died on the way (a NAT forgot it) is never noticed."""
    opened: list[tuple[str, dict[str, int]]] = []

    def insecure_channel(target: str, options: list[tuple[str, int]] | None = None) -> object:
        opened.append((target, dict(options or [])))
        return object()

    monkeypatch.setattr(grpc.aio, "insecure_channel", insecure_channel)
    args = agent_cli.build_parser().parse_args(
        ["--server", "cloud:8080", "--user", USER, "--device", DEVICE, "--credentials", "c"]
    )
    agent_cli.build_agent(args)._channel_factory()
    assert opened == [("cloud:8080", dict(keepalive_options()))]


def test_the_agent_opens_its_link_with_a_link_token(world: LinkWorld) -> None:
    """`--token`: the device needs no credentials of its own, only a link token."""
    _id, token = issue(world)
    argv = ["--server", world.target, "--user", USER, "--device", DEVICE, "--token", token]
    agent = agent_cli.build_agent(agent_cli.build_parser().parse_args(argv))

    async def scenario() -> int:
        task = await connected(agent)
        await stopped(task)
        return agent.connections

    assert world.run(scenario) == 1
    assert agent.link_secret is None


def test_a_callers_token_as_token_exits_1_with_one_line(
    world: LinkWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    _id, token = issue(world, link=False)
    argv = ["--server", world.target, "--user", USER, "--device", DEVICE, "--token", token]
    agent = agent_cli.build_agent(agent_cli.build_parser().parse_args(argv))
    code = asyncio.run(asyncio.wait_for(agent_cli.run_agent(agent, world.target), 30))
    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "thingwire: error: the server refused the link: invalid device credentials "
        "(UNAUTHENTICATED)"
    )


def test_the_outbox_bound_comes_from_the_environment() -> None:
    assert AgentSettings.from_env({}).outbox_max_bytes == 64 * 1024 * 1024
    settings = AgentSettings.from_env(
        {"THINGWIRE_AGENT_STATE_DIR": "/srv/agent", "THINGWIRE_AGENT_OUTBOX_MAX_BYTES": "1048576"}
    )
    assert settings.outbox_max_bytes == 1048576
    assert settings.outbox_path == Path("/srv/agent/outbox.db")


@pytest.mark.parametrize("value", ["", "lots", "1.5", "1000", "-1"])
def test_an_unusable_outbox_bound_exits_1_with_one_line(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("THINGWIRE_AGENT_OUTBOX_MAX_BYTES", value)
    with pytest.raises(AgentConfigError, match="THINGWIRE_AGENT_OUTBOX_MAX_BYTES"):
        AgentSettings.from_env()
    code = agent_cli.main(
        ["--server", "127.0.0.1:1", "--user", "ada", "--device", "d", "--credentials", "c"]
    )
    assert code == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("thingwire: error: THINGWIRE_AGENT_OUTBOX_MAX_BYTES=")


def test_simulate_sends_the_seeds_record_types_over_the_link(world: LinkWorld) -> None:
    """`--simulate` feeds the dongle's own records into the outbox, and they reach the cloud
    (the vehicle's, positions and power events included, are attach_vehicle's: tests/vehicle
    and tests/integration/test_vehicle_end_to_end.py)."""
    agent = agent_cli.build_agent(agent_cli.build_parser().parse_args(_args(world, simulate=True)))
    wanted = {"event.system.minion", "ec2x.data_usage"}

    def types() -> set[str]:
        with world.database.session() as s:
            rows = s.execute(sa.text("SELECT DISTINCT record_type FROM telemetry_records"))
            return {row[0] for row in rows}

    async def scenario() -> int:
        async def terminate_once_stored() -> None:
            await agent.connected.wait()
            for _ in range(300):
                if await asyncio.to_thread(types) >= wanted:
                    break
                await asyncio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)

        killer = asyncio.create_task(terminate_once_stored())
        code = await asyncio.wait_for(agent_cli.run_agent(agent, world.target), 30)
        await killer
        return code

    assert asyncio.run(scenario()) == 0
    assert types() == wanted
    with world.database.session() as s:
        online = s.execute(
            sa.text(
                "SELECT fields FROM telemetry_records WHERE record_type = 'event.system.minion'"
            )
        ).scalar_one()
    fields = json.loads(online) if isinstance(online, str) else online
    assert fields == {"@tag": "system/minion/online"}
