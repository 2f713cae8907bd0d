"""The `thingwire` command: run the stack, probe it, and manage users, tokens and devices.

Every management command prints one JSON object on the last line of stdout and exits
non-zero with a one-line message on stderr when it fails. They open the database directly
(SQLite in WAL mode, or PostgreSQL), so they work whether or not the server is running.
Settings come from the THINGWIRE_* environment variables (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

# serve spawns Envoy, which execs at once: gRPC's fork handlers are not needed, and with
# them on grpc core logs a warning at every spawn. Read when grpc initialises, so set first.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import grpc
import orjson
from sqlalchemy.orm import Session

from device_agent import cli as agent_cli
from gateway.launcher import GatewayError
from server.auth.device_tokens import sign_stored
from server.clock import utc_now
from server.config import ConfigError, Settings
from server.errors import InvalidArgument, NotFound, ThingwireError
from server.health_client import check_health
from server.security.jwt_tokens import TokenSigner
from server.security.keys import DEFAULT_GRACE, KeyFile, KeyFileError
from server.services.telemetry_push_service import received_iso
from server.state import open_database
from server.storage import devices, orgs, rejects, users
from server.storage.models import User
from server.storage.tokens import api_tokens, device_tokens
from server.storage.tokens.device_tokens import ALL_RESOURCES

Command = Callable[[Session, argparse.Namespace], dict[str, Any]]
#: A command that signs tokens: it is given the signer of the server's key file too.
SignedCommand = Callable[[Session, argparse.Namespace, TokenSigner], dict[str, Any]]


def parse_iso8601(value: str) -> datetime:
    """An ISO 8601 time; a time without zone is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{value!r} is not an ISO 8601 time") from None
    return utc_now(parsed)


def _user(s: Session, login: str) -> User:
    user = users.get_user_by_login(s, login)
    if user is None:
        raise NotFound(f"no user {login!r}")
    return user


def user_create(s: Session, a: argparse.Namespace) -> dict[str, Any]:
    user = users.create_user(s, a.email, a.password, a.username)
    return {"pk": user.id, "username": user.username, "email": user.email}


def apitoken_create(s: Session, a: argparse.Namespace) -> dict[str, Any]:
    user = _user(s, a.user)
    expires = parse_iso8601(a.expires) if a.expires else None
    # Storage refuses an expiry that does not lie ahead (the rule every caller shares).
    row, secret = api_tokens.create_api_token(s, user.id, a.name, expires, utc_now())
    return {"id": row.id, "name": row.name, "token": secret}


def device_create(s: Session, a: argparse.Namespace) -> dict[str, Any]:
    user = _user(s, a.user)
    device, push_token = devices.create_device(
        s, user.id, a.device, a.credentials, a.description, a.unit_id
    )
    return {"device": device.device_id, "unit_id": device.unit_id, "push_token": push_token}


def device_push_token(s: Session, a: argparse.Namespace) -> dict[str, Any]:
    """A new push token for an existing device; the old one stops working."""
    user = _user(s, a.user)
    device, push_token = devices.rotate_push_token(s, user.id, a.device)
    return {"device": device.device_id, "unit_id": device.unit_id, "push_token": push_token}


def device_token(s: Session, a: argparse.Namespace, signer: TokenSigner) -> dict[str, Any]:
    """A link token: the device's own identity for its link, never a caller's credential.

    Only the operator issues these; the Devices API's tokens are callers' tokens and never
    open a link (docs/design.md, "Device tokens"). It is listed and deleted (revoked) with
    the device's other tokens.
    """
    user = _user(s, a.user)
    expires = parse_iso8601(a.expires) if a.expires else None
    now = utc_now()
    row = device_tokens.create_device_token(
        s, user.id, a.device, a.name, ALL_RESOURCES, expires, now, signer.current_kid, link=True
    )
    token, _kid = sign_stored(signer, row, user.username, a.device, now)
    return {"id": row.id, "name": row.name, "token": token}


def org_create(s: Session, a: argparse.Namespace) -> dict[str, Any]:
    org, api_key = orgs.create_org(s, a.name)
    return {"id": org.id, "api_key": api_key}


def input_create(s: Session, a: argparse.Namespace) -> dict[str, Any]:
    row = orgs.create_input(s, a.org, a.name, a.unit)
    return {"id": row.id, "name": row.name, "measure_unit": row.measure_unit}


def asset_create(s: Session, a: argparse.Namespace) -> dict[str, Any]:
    ids = [i.strip() for i in a.inputs.split(",") if i.strip()]
    asset = orgs.create_asset(s, a.org, a.name, ids)
    return {"id": asset.id, "name": asset.name}


def telemetry_rejects(s: Session, a: argparse.Namespace) -> dict[str, Any]:
    """The records set aside from a device's batches, newest first, and how many in all."""
    if a.limit < 1:
        raise InvalidArgument("--limit must be at least 1")
    user = _user(s, a.user)
    device = devices.get_device(s, user.id, a.device)
    page = rejects.list_rejects(s, device.id, a.limit)
    return {
        "device": device.device_id,
        "count": page.total,
        "rejects": [
            {
                "position": row.position,
                "reason": row.reason,
                "record": _json_or_text(row.record),
                "received": received_iso(row.received_ts),
                "source": row.source,
            }
            for row in page.rows
        ],
    }


def _json_or_text(text: str) -> object:
    """A stored record as the JSON value it was, or its text when it was cut short."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def key_rotate(settings: Settings, a: argparse.Namespace) -> dict[str, Any]:
    """A new signing key; the previous one verifies its tokens for the grace period."""
    if a.grace_days < 0:
        raise InvalidArgument("--grace-days must not be negative")
    ring = KeyFile(settings.jwt_key_file).rotate(utc_now(), timedelta(days=a.grace_days))
    retired = ring.keys[1]
    return {
        "key_file": str(settings.jwt_key_file),
        "kid": ring.current.kid,
        "retired_kid": retired.kid,
        "retired_verifies_until": retired.verify_until.isoformat()
        if retired.verify_until
        else None,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thingwire", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server and the cloud gateway (foreground)")
    serve.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="run N server processes behind the gateway, on PostgreSQL, routing device calls"
        " through NATS (THINGWIRE_NATS_URL); default 1: one process",
    )
    # How the supervisor of --replicas starts each replica; not for operators.
    serve.add_argument("--replica-index", type=int, default=None, help=argparse.SUPPRESS)
    status = commands.add_parser("status", help="health-check a running stack over gRPC")
    status.add_argument(
        "--target", help="HOST:PORT to probe (default: the gateway, 127.0.0.1:THINGWIRE_HTTP_PORT)"
    )
    status.add_argument("--service", default="", help="a service name ('' = the whole server)")
    # The device side's command (device_agent/cli.py). The entry point, thingwire_cli.main,
    # runs it without importing this module; it is listed here for `thingwire --help`.
    agent = commands.add_parser(
        "agent", help="run a device's agent (foreground), linked to a server's gateway"
    )
    agent_cli.add_arguments(agent)

    def actions(name: str, what: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        return commands.add_parser(name, help=f"manage {what}s").add_subparsers(
            dest="action", required=True
        )

    def group(name: str, article: str, what: str) -> argparse.ArgumentParser:
        return actions(name, what).add_parser("create", help=f"create {article} {what}")

    p = group("user", "a", "user")
    p.add_argument("--email", required=True, help="the login email (unique)")
    p.add_argument("--password", required=True, help="at least 8 characters")
    p.add_argument(
        "--username",
        help="[a-zA-Z0-9_]{1,32}, the USER_ID of Thinger paths "
        "(default: from the email's local part, made unique)",
    )
    p.set_defaults(run=user_create)

    p = group("apitoken", "an", "AutoPi API token")
    p.add_argument("--user", required=True, help="user name or email")
    p.add_argument("--name", required=True)
    p.add_argument("--expires", help="ISO 8601 expiry (default: never)")
    p.set_defaults(run=apitoken_create)

    device_actions = actions("device", "device")
    p = device_actions.add_parser("create", help="create a device")
    p.add_argument("--user", required=True, help="user name or email")
    p.add_argument("--device", required=True, help="device id, [a-zA-Z0-9_]{1,25}")
    p.add_argument("--credentials", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--unit-id", dest="unit_id", help="AutoPi unit id (UUID; default: new)")
    p.set_defaults(run=device_create)
    p = device_actions.add_parser(
        "token", help="issue a link token: it opens the device's link (and calls nothing)"
    )
    p.add_argument("--user", required=True, help="user name or email")
    p.add_argument("--device", required=True, help="the device id")
    p.add_argument("--name", required=True)
    p.add_argument("--expires", help="ISO 8601 expiry (default: never)")
    p.set_defaults(run_signed=device_token)
    p = device_actions.add_parser(
        "push-token",
        help="issue a new push token (the HTTP push's credential); the old one stops working",
    )
    p.add_argument("--user", required=True, help="user name or email")
    p.add_argument("--device", required=True, help="the device id")
    p.set_defaults(run=device_push_token)

    telemetry = actions("telemetry", "device record")
    p = telemetry.add_parser(
        "rejects", help="list the records set aside from a device's batches, newest first"
    )
    p.add_argument("--user", required=True, help="user name or email")
    p.add_argument("--device", required=True, help="the device id")
    p.add_argument("--limit", type=int, default=100, help="the most records shown (default 100)")
    p.set_defaults(run=telemetry_rejects)

    keys = commands.add_parser("key", help="manage the JWT signing keys").add_subparsers(
        dest="action", required=True
    )
    p = keys.add_parser(
        "rotate", help="start signing with a new key; the old one verifies for a grace period"
    )
    p.add_argument(
        "--grace-days",
        type=float,
        default=DEFAULT_GRACE.days,
        help=f"how long tokens of the old key stay valid (default {DEFAULT_GRACE.days}; "
        "0 after a leak: they stop at once)",
    )
    p.set_defaults(run_keys=key_rotate)

    p = group("org", "a", "Datacooee organisation")
    p.add_argument("--name", required=True)
    p.set_defaults(run=org_create)

    p = group("input", "a", "Datacooee input")
    p.add_argument("--org", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--unit", default="")
    p.set_defaults(run=input_create)

    p = group("asset", "a", "Datacooee asset")
    p.add_argument("--org", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--inputs", required=True, help="comma-separated input ids")
    p.set_defaults(run=asset_create)
    return parser


def run_status(settings: Settings, args: argparse.Namespace) -> int:
    """Print the health of a running stack; exit 1 unless it is SERVING."""
    target = args.target or f"127.0.0.1:{settings.http_port}"
    with grpc.insecure_channel(target) as channel:
        status = check_health(channel, args.service)
    sys.stdout.write(orjson.dumps({"target": target, "status": status}).decode() + "\n")
    return 0 if status == "SERVING" else 1


def run_management(settings: Settings, command: Command, args: argparse.Namespace) -> int:
    """Run one command in one transaction and print its JSON result."""
    database = open_database(settings)
    try:
        with database.session() as session:
            result = command(session, args)
    finally:
        database.dispose()
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    """`thingwire serve`: one process, N replicas (`--replicas`), or one replica (the
    supervisor's child, `--replica-index`)."""
    from server import replicas
    from server.serve import banner, serve

    if args.replica_index is not None:
        return asyncio.run(replicas.run_replica(settings, args.replica_index))
    if args.replicas != 1:
        try:
            return asyncio.run(replicas.serve_replicas(settings, args.replicas, banner(settings)))
        except replicas.ReplicaError as error:
            print(f"thingwire: error: {error}", file=sys.stderr)
            return 1
    return asyncio.run(serve(settings))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "agent":  # the device side: its own settings and logging
        return agent_cli.run(args)
    # Management commands keep stderr for their one error line; serve logs what it does.
    logging.basicConfig(
        level=logging.INFO if args.command == "serve" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        if args.command == "status":
            return run_status(settings, args)
        if args.command == "serve":
            return run_serve(settings, args)
        if args.command == "key":
            result = args.run_keys(settings, args)
            sys.stdout.write(orjson.dumps(result).decode() + "\n")
            return 0
        if hasattr(args, "run_signed"):
            signer = TokenSigner(KeyFile(settings.jwt_key_file))
            signed: SignedCommand = args.run_signed
            return run_management(settings, lambda s, a: signed(s, a, signer), args)
        return run_management(settings, args.run, args)
    except (ThingwireError, ConfigError, GatewayError, KeyFileError) as error:
        print(f"thingwire: error: {getattr(error, 'message', error)}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"thingwire: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
