"""The operator contract: every setting comes from one THINGWIRE_* environment variable.

Names and defaults are fixed by docs/design.md ("Operator contract"); other tools rely on them.
Ports are never 0: tests and side-by-side stacks pick their own free ports explicitly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DB_URL = "sqlite:///./var/thingwire.db"
#: Where the server keeps what it makes for itself (the gateway's files, the key file).
STATE_DIR = Path("var")
#: The longest resource call deadline an operator may set (a device is told it in ms).
MAX_CALL_TIMEOUT_S = 3600.0
#: The longest telemetry retention an operator may set (1,000 years; 0 keeps forever).
MAX_RETENTION_DAYS = 365_000.0
#: The largest telemetry upload an operator may allow on the link: well inside the server's
#: gRPC message limit (`Settings.max_body_bytes`), which would otherwise end the stream.
MAX_LINK_UPLOAD_BYTES = 4 * 1024 * 1024


class ConfigError(ValueError):
    """An environment variable holds a value thingwire cannot use."""


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}={port} is outside 1..65535")
    return port


def _raw(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value, None when unset (then the default applies).

    Set but empty is a value like any other, and refused by the number readers: an
    expansion that came out empty (`THINGWIRE_X=$UNSET`) says so instead of quietly
    meaning the default, as a port does (docs/design.md, "Operator contract").
    """
    return env.get(name)


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float,
    maximum: float = math.inf,
    exclusive_minimum: bool = False,
) -> float:
    """A finite number within [minimum, maximum] (or (minimum, maximum])."""
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    low_ok = value > minimum if exclusive_minimum else value >= minimum
    if not (low_ok and value <= maximum and math.isfinite(value)):  # also refuses nan
        low = "(" if exclusive_minimum else "["
        high = f"{maximum:g}]" if math.isfinite(maximum) else "∞)"
        raise ConfigError(f"{name}={raw} is outside {low}{minimum:g}, {high}")
    return value


def _whole_number(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    """A whole number of at least `minimum` (a minimum of 0 where 0 means "no limit")."""
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _bounded_whole(
    env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int
) -> int:
    """A whole number within [minimum, maximum]."""
    value = _whole_number(env, name, default, minimum=minimum)
    if value > maximum:
        raise ConfigError(f"{name}={value} must be at most {maximum}")
    return value


#: Devices one account may have through the Devices API (docs/design.md); 0: no limit.
DEFAULT_MAX_DEVICES_PER_USER = 1000
#: Telemetry ingest (docs/telemetry-ingest.md): batches waiting for the writer, the largest
#: pushed batch once decompressed, and how hard the writer's SQLite commits sync.
DEFAULT_TELEMETRY_QUEUE_BATCHES = 1024
DEFAULT_TELEMETRY_MAX_BATCH_BYTES = 8 * 1024 * 1024
SQLITE_SYNCHRONOUS_MODES = ("FULL", "NORMAL")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (case-insensitive), given in upper case."""
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.upper() not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return raw.upper()


def _nats_url(env: Mapping[str, str]) -> str | None:
    """THINGWIRE_NATS_URL: unset is None (no broker); otherwise one or more nats:// URLs."""
    raw = env.get("THINGWIRE_NATS_URL")
    if raw is None:
        return None
    urls = [url.strip() for url in raw.split(",")]
    if not all(url.startswith(("nats://", "tls://")) and len(url) > 7 for url in urls):
        raise ConfigError(
            f"THINGWIRE_NATS_URL={raw!r} is not a nats:// URL (or a comma-separated list of them)"
        )
    return ",".join(urls)


@dataclass(frozen=True)
class Settings:
    """What `thingwire serve` needs to run the server and the cloud gateway.

    The defaults here are the documented ones; `from_env` falls back to them.
    """

    db_url: str = DEFAULT_DB_URL
    http_port: int = 8080
    grpc_port: int = 50051
    envoy_admin_port: int = 9901
    state_dir: Path = STATE_DIR
    # The JWT signing keys (server/security/keys.py), never in the database. Replicas on one
    # database must share this file.
    jwt_key_file: Path = STATE_DIR / "jwt-keys.json"
    # REST bodies above this get 413 from the gateway; gRPC messages up to it are accepted.
    max_body_bytes: int = 8 * 1024 * 1024
    # Thinger's "the user account is limited": adding a device past it is a 400; 0: no limit.
    max_devices_per_user: int = DEFAULT_MAX_DEVICES_PER_USER
    # The deadline of a resource call when the caller sets none or a longer one (a gRPC
    # caller's shorter deadline wins). Keep it below the gateway's 60 s REST timeout.
    resource_call_timeout_s: float = 10.0
    # The device link (docs/device-link.md, "Link health" and "Statistics"). A link is probed
    # with an HTTP/2 PING every `link_keepalive_s`; one left unanswered for
    # `link_keepalive_timeout_s` ends it, so a dead link shows offline within about the sum.
    link_keepalive_s: float = 10.0
    link_keepalive_timeout_s: float = 10.0
    # Calls one device may have in flight; past it callers get 429 at once.
    link_max_calls_in_flight: int = 64
    # A graceful stop tells each device to come back within this many seconds.
    link_go_away_window_s: float = 5.0
    # How often the figures of live links are written to the devices table.
    link_stats_interval_s: float = 15.0
    # Telemetry older than this many days (device records by their own time, rejected
    # records and link batch ids by arrival, Datacooee values by their time) is removed by
    # the server's maintenance task, in bounded batches; 0: kept forever.
    telemetry_retention_days: float = 0.0
    # Telemetry ingest (docs/telemetry-ingest.md). Batches that may wait for the group
    # commit; past it pushes get 503 at once (devices retry).
    telemetry_queue_batches: int = DEFAULT_TELEMETRY_QUEUE_BATCHES
    # A pushed batch larger than this once decompressed gets 413.
    telemetry_max_batch_bytes: int = DEFAULT_TELEMETRY_MAX_BATCH_BYTES
    # FULL: a 2xx means the batch survives a power cut; NORMAL: an application crash only.
    telemetry_sqlite_synchronous: str = "FULL"
    # Telemetry uploads on the link (docs/device-link.md, "Telemetry uploads"): the largest
    # batch in bytes and records, and the batches of one link stored at once.
    link_max_upload_bytes: int = 1024 * 1024
    link_max_upload_records: int = 10_000
    link_max_uploads_in_flight: int = 4
    # Replicas (docs/architecture.md, "Scale-out"): unset, one process routes device calls
    # over its own links; set, every replica connects to this NATS server and calls reach a
    # device whichever replica holds its stream.
    nats_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the THINGWIRE_* variables, falling back to the documented defaults."""
        env = os.environ if env is None else env
        key_file = env.get("THINGWIRE_JWT_KEY_FILE", "")
        return cls(
            db_url=env.get("THINGWIRE_DB_URL", cls.db_url),
            http_port=_port(env, "THINGWIRE_HTTP_PORT", cls.http_port),
            grpc_port=_port(env, "THINGWIRE_GRPC_PORT", cls.grpc_port),
            envoy_admin_port=_port(env, "THINGWIRE_ENVOY_ADMIN_PORT", cls.envoy_admin_port),
            jwt_key_file=Path(key_file) if key_file else cls.jwt_key_file,
            max_devices_per_user=_whole_number(
                env, "THINGWIRE_MAX_DEVICES_PER_USER", cls.max_devices_per_user, minimum=0
            ),
            resource_call_timeout_s=_number(
                env,
                "THINGWIRE_RESOURCE_CALL_TIMEOUT_S",
                cls.resource_call_timeout_s,
                minimum=0,
                exclusive_minimum=True,
                maximum=MAX_CALL_TIMEOUT_S,
            ),
            link_keepalive_s=_number(
                env, "THINGWIRE_LINK_KEEPALIVE_S", cls.link_keepalive_s, minimum=1
            ),
            link_keepalive_timeout_s=_number(
                env, "THINGWIRE_LINK_KEEPALIVE_TIMEOUT_S", cls.link_keepalive_timeout_s, minimum=1
            ),
            link_max_calls_in_flight=_whole_number(
                env, "THINGWIRE_LINK_MAX_CALLS_IN_FLIGHT", cls.link_max_calls_in_flight, minimum=1
            ),
            link_go_away_window_s=_number(
                env, "THINGWIRE_LINK_GO_AWAY_WINDOW_S", cls.link_go_away_window_s, minimum=0
            ),
            link_stats_interval_s=_number(
                env, "THINGWIRE_LINK_STATS_INTERVAL_S", cls.link_stats_interval_s, minimum=0.1
            ),
            telemetry_retention_days=_number(
                env,
                "THINGWIRE_TELEMETRY_RETENTION_DAYS",
                cls.telemetry_retention_days,
                minimum=0,
                maximum=MAX_RETENTION_DAYS,
            ),
            telemetry_queue_batches=_whole_number(
                env, "THINGWIRE_TELEMETRY_QUEUE_BATCHES", cls.telemetry_queue_batches, minimum=1
            ),
            telemetry_max_batch_bytes=_whole_number(
                env,
                "THINGWIRE_TELEMETRY_MAX_BATCH_BYTES",
                cls.telemetry_max_batch_bytes,
                minimum=1024,
            ),
            telemetry_sqlite_synchronous=_choice(
                env,
                "THINGWIRE_TELEMETRY_SQLITE_SYNCHRONOUS",
                cls.telemetry_sqlite_synchronous,
                SQLITE_SYNCHRONOUS_MODES,
            ),
            link_max_upload_bytes=_bounded_whole(
                env,
                "THINGWIRE_LINK_MAX_UPLOAD_BYTES",
                cls.link_max_upload_bytes,
                minimum=1024,
                maximum=MAX_LINK_UPLOAD_BYTES,
            ),
            link_max_upload_records=_bounded_whole(
                env,
                "THINGWIRE_LINK_MAX_UPLOAD_RECORDS",
                cls.link_max_upload_records,
                minimum=1,
                maximum=100_000,
            ),
            link_max_uploads_in_flight=_bounded_whole(
                env,
                "THINGWIRE_LINK_MAX_UPLOADS_IN_FLIGHT",
                cls.link_max_uploads_in_flight,
                minimum=1,
                maximum=64,
            ),
            nats_url=_nats_url(env),
        )
