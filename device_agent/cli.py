"""`thingwire agent`: one device's agent in the foreground, linked to the cloud.

    thingwire agent --server HOST:PORT --user U --device D (--credentials C | --token T)
                    [--simulate]

It keeps the device's link open (normally through the cloud gateway's port), reconnecting
with backoff while the server is away, and logs to stderr and to
`<THINGWIRE_AGENT_STATE_DIR>/log/syslog`. SIGTERM or SIGINT closes the link and exits 0; a
link refused for good (wrong credentials, replaced by a newer connection of the device)
exits 1 with a one-line message. `--simulate` declares the resources of Thinger's examples
(`device_agent/simulated.py`) and, without a CAN interface, reads a simulated car
(docs/vehicle.md); without it the agent declares none and keeps the device
online (docs/device-link.md, "The agent's command").

This module imports nothing of the cloud: a device with `thingwire[agent]` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from device_agent.agent import Agent, LinkRefused
from device_agent.channel import insecure_channel_factory
from device_agent.commands import ApnSettings, Commands, CommandSettings
from device_agent.config import AgentConfigError, AgentSettings
from device_agent.local_api import LocalApi
from device_agent.local_identity import load_identity
from device_agent.local_service import LocalServicer
from device_agent.outbox import Outbox
from device_agent.simulated import simulate
from device_agent.simulated_telemetry import produce
from gateway.launcher import GatewayError

if TYPE_CHECKING:
    from device_agent.vehicle.runtime import Vehicle

log = logging.getLogger(__name__)


class GatewayDied(Exception):
    """The device gateway exited while the agent ran."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exit code {code}")
        self.code = code


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: The agent's log and its command log, as the Local API's `/download_log/?file=` serves
#: them (`syslog`, `salt/minion`).
SYSLOG = "syslog"
MINION_LOG = "salt/minion"
COMMANDS_LOGGER = "device_agent.commands"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def server_address(value: str) -> str:
    """HOST:PORT, checked as far as it can be before connecting ([::1]:8080 for IPv6)."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's options, on its own parser or on the `agent` subcommand of the cloud's."""
    parser.add_argument(
        "--server",
        required=True,
        type=server_address,
        metavar="HOST:PORT",
        help="the cloud's gateway port (REST and gRPC), e.g. 127.0.0.1:8080",
    )
    parser.add_argument("--user", required=True, help="the device owner's user name")
    parser.add_argument("--device", required=True, help="the device id")
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument("--credentials", help="the device's credentials")
    secret.add_argument(
        "--token", help="a link token of the device (`thingwire device token`), not credentials"
    )
    parser.add_argument(
        "--unit-id",
        help="the cloud's unit id of the device (a UUID), for its Local API; kept in the "
        "state directory (THINGWIRE_AGENT_UNIT_ID)",
    )
    parser.add_argument(
        "--no-local-api",
        action="store_true",
        help="do not serve the Local API (the device gateway on THINGWIRE_LOCAL_PORT)",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="declare the demo resources of Thinger's examples "
        "(location, temperature, relay, rgb, command, io, reset) and, unless "
        "THINGWIRE_AGENT_CAN_INTERFACE is set, drive a simulated car",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thingwire agent",
        description="Run a device's agent in the foreground: keep its link to the cloud open "
        "and answer calls to its resources. Stop it with SIGTERM or Ctrl-C.",
    )
    add_arguments(parser)
    return parser


def build_agent(args: argparse.Namespace, settings: AgentSettings | None = None) -> Agent:
    """The agent the arguments describe, its resources declared, its outbox open.

    Its channel PINGs the server (docs/device-link.md, "Link health"): without that, a
    device behind a NAT that forgot its connection would wait forever on a dead link.
    The outbox (`<state dir>/outbox.db`) is uploaded over every link; with `--simulate`
    the simulated vehicle's records feed it.
    """
    settings = settings or AgentSettings.from_env()
    outbox = Outbox.open(settings.outbox_path, settings.outbox_max_bytes)
    agent = Agent(
        insecure_channel_factory(args.server),
        user=args.user,
        device=args.device,
        credentials=args.credentials or "",
        device_token=args.token or "",
        outbox=outbox,
    )
    if args.simulate:
        simulate(agent)
        agent.alongside(lambda: produce(outbox))
    return agent


def attach_vehicle(agent: Agent, commands: Commands, *, simulate: bool) -> Vehicle | None:
    """The vehicle, when a CAN interface is configured or `--simulate` asks for the
    simulated ECU: polled alongside the link into the outbox, read by the `obd` resource and
    the `obd.query` / `obd.dtc` commands (docs/vehicle.md, "In the agent").

    The CAN libraries are the `agent` extra's: imported only here, so that the cloud's
    install (which runs `thingwire agent` without a vehicle) needs none of them.
    AgentConfigError when a vehicle is wanted and they are missing; ValueError for a bad
    THINGWIRE_AGENT_CAN_* setting.
    """
    if not os.environ.get("THINGWIRE_AGENT_CAN_INTERFACE") and not simulate:
        return None
    try:
        from device_agent.vehicle.runtime import Vehicle, VehicleSettings
    except ModuleNotFoundError as missing:
        raise AgentConfigError(
            f"reading a vehicle needs thingwire[agent] (no module {missing.name!r})"
        ) from None
    settings = VehicleSettings.from_env()
    assert agent.outbox is not None
    vehicle = Vehicle(settings, agent.outbox.append, simulate=settings.interface is None)
    agent.alongside(vehicle.run)
    commands.register("obd.query", vehicle.query)
    commands.register("obd.dtc", vehicle.dtc)
    commands.register("obd.status", vehicle.status)
    agent.output("obd", description="the vehicle's latest OBD-II readings, by PID name")(
        vehicle.current
    )
    return vehicle


def build_local_api(
    args: argparse.Namespace, settings: AgentSettings, commands: Commands, apn: ApnSettings
) -> LocalApi | None:
    """The Local API the arguments and settings describe, or None with `--no-local-api`.

    ValueError for a unit id that is not a UUID.
    """
    if args.no_local_api:
        return None
    identity = load_identity(
        settings.state_dir, args.unit_id or settings.unit_id, settings.local_password
    )
    servicer = LocalServicer(
        identity,
        log_dir=settings.log_dir,
        commands=commands,
        apn=apn,
        password=settings.local_password,
        hostnames=settings.local_hostnames,
    )
    if settings.local_password is None and settings.local_host not in LOOPBACK_HOSTS:
        log.warning(
            "the Local API listens on %s without a password: anyone who reaches that address "
            "can run commands (set THINGWIRE_AGENT_LOCAL_PASSWORD)",
            settings.local_host,
        )
    return LocalApi(
        servicer,
        state_dir=settings.state_dir,
        port=settings.local_port,
        admin_port=settings.local_admin_port,
        host=settings.local_host,
    )


def configure_logging(settings: AgentSettings) -> None:
    """INFO and above to stderr and to `<state dir>/log/syslog` (created if need be).

    A WatchedFileHandler reopens the file when logrotate moves it away.
    """
    settings.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    formatter = logging.Formatter(LOG_FORMAT)
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stderr),
        logging.handlers.WatchedFileHandler(settings.log_dir / SYSLOG, encoding="utf-8"),
    ]
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    # The command log, as salt keeps it: what ran, how it ended (never the arguments).
    (settings.log_dir / "salt").mkdir(exist_ok=True, mode=0o750)
    minion = logging.handlers.WatchedFileHandler(settings.log_dir / MINION_LOG, encoding="utf-8")
    minion.setFormatter(formatter)
    logging.getLogger(COMMANDS_LOGGER).addHandler(minion)


async def _serve_beside(agent: Agent, local_api: LocalApi | None) -> None:
    """The link, and the device gateway beside it: GatewayDied if the gateway exits first."""
    link = asyncio.create_task(agent.serve())
    if local_api is None:
        await link
        return
    gateway = asyncio.create_task(local_api.wait_gateway())
    try:
        await asyncio.wait({link, gateway}, return_when=asyncio.FIRST_COMPLETED)
        if link.done():
            await link
        raise GatewayDied(gateway.result())
    finally:
        for task in (link, gateway):
            task.cancel()
        await asyncio.gather(link, gateway, return_exceptions=True)


async def run_agent(agent: Agent, target: str, local_api: LocalApi | None = None) -> int:
    """Serve until a signal (0), a refusal for good or the device gateway's death (1).

    The Local API starts first and answers whether or not the cloud does.
    """
    if local_api is not None:
        try:
            await local_api.start()
        except (GatewayError, OSError) as error:
            print(f"thingwire: error: the Local API cannot start: {error}", file=sys.stderr)
            return 1
    task = asyncio.create_task(_serve_beside(agent, local_api))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    names = ", ".join(agent.resources) or "none"
    log.info("agent starting: server %s, resources: %s", target, names)
    try:
        await task
    except asyncio.CancelledError:
        log.info("stopped on signal; the link is closed")
        return 0
    except GatewayDied as died:
        log.error("the device gateway exited (code %s); stopping", died.code)
        print(
            f"thingwire: error: the device gateway (Envoy) exited unexpectedly (exit code "
            f"{died.code}); the agent stopped",
            file=sys.stderr,
            flush=True,
        )
        return 1
    except LinkRefused as refused:
        log.error("the server refused the link for good: %s", refused)
        print(
            f"thingwire: error: the server refused the link: {refused.details} "
            f"({refused.code.name})",
            file=sys.stderr,
            flush=True,
        )
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if local_api is not None:
            await local_api.stop()
        if agent.outbox is not None:
            await agent.outbox.close()  # what was appended is committed before exiting
    return 0  # serve() returns only by raising; kept for the type checker


def serve(agent: Agent, target: str, local_api: LocalApi | None = None) -> int:
    """Log as `thingwire agent` does and run `agent` until a signal or a refusal.

    Its exit code; a program that declares resources of its own runs them this way.
    """
    try:
        settings = AgentSettings.from_env()
    except AgentConfigError as error:
        print(f"thingwire: error: {error}", file=sys.stderr)
        return 1
    try:
        configure_logging(settings)
    except OSError as error:
        print(f"thingwire: error: cannot write the agent's log: {error}", file=sys.stderr)
        return 1
    return asyncio.run(run_agent(agent, target, local_api))


def run(args: argparse.Namespace) -> int:
    """`thingwire agent` with parsed arguments."""
    try:
        settings = AgentSettings.from_env()
        command_settings = CommandSettings.from_env()
    except (AgentConfigError, ValueError) as error:
        print(f"thingwire: error: {error}", file=sys.stderr)
        return 1
    apn = ApnSettings(settings.state_dir)
    commands = Commands(settings.state_dir, command_settings, apn)
    try:
        agent = build_agent(args, settings)
        attach_vehicle(agent, commands, simulate=args.simulate)
        agent.commands = commands  # the cloud's relay runs the same registry (device-link.md)
        local_api = build_local_api(args, settings, commands, apn)
        if local_api is not None:
            agent.on_unit_id = local_api.identity.adopt
    except (AgentConfigError, ValueError) as error:
        print(f"thingwire: error: {error}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as error:
        print(f"thingwire: error: cannot open the agent's state: {error}", file=sys.stderr)
        return 1
    return serve(agent, args.server, local_api)


def main(argv: Sequence[str] | None = None) -> int:
    """The agent's own entry: `argv` is what follows `thingwire agent`."""
    return run(build_parser().parse_args(argv))
