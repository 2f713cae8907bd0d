"""The operator contract: every setting comes from one THINGWIRE_* environment variable.

Names and defaults are fixed by docs/design.md ("Operator contract"); other tools rely on them.
Ports are never 0: tests and side-by-side stacks pick their own free ports explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DB_URL = "sqlite:///./var/thingwire.db"
#: Where the server keeps what it makes for itself (the gateway's files, the key file).
STATE_DIR = Path("var")
#: The longest resource call deadline an operator may set (a device is told it in ms).
MAX_CALL_TIMEOUT_S = 3600.0


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


def _seconds(env: Mapping[str, str], name: str, default: float, maximum: float) -> float:
    raw = env.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not 0 < value <= maximum:  # also refuses nan
        raise ConfigError(f"{name}={raw} is outside (0, {maximum:g}] seconds")
    return value


def _whole_number(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """A whole number of at least `minimum` (a minimum of 0 where 0 means "no limit")."""
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


#: Devices one account may have through the Devices API (docs/design.md); 0: no limit.
DEFAULT_MAX_DEVICES_PER_USER = 1000


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
    # Calls one device may have in flight; past it callers get 429 at once.
    max_calls_in_flight: int = 64

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
            resource_call_timeout_s=_seconds(
                env,
                "THINGWIRE_RESOURCE_CALL_TIMEOUT_S",
                cls.resource_call_timeout_s,
                MAX_CALL_TIMEOUT_S,
            ),
            max_calls_in_flight=_whole_number(
                env, "THINGWIRE_MAX_CALLS_IN_FLIGHT", cls.max_calls_in_flight, minimum=1
            ),
        )
