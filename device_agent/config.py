"""The agent's settings: each comes from one THINGWIRE_* environment variable.

Names and defaults are the operator contract (docs/design.md, "Operator contract"). The
device side reads them here, not through `server.config`, so that it needs nothing of the
cloud.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Where the agent keeps its state: its log and its outbox now; grains and settings later.
DEFAULT_STATE_DIR = Path("var") / "agent"
#: The outbox's bound on disk (THINGWIRE_AGENT_OUTBOX_MAX_BYTES): past it the oldest records
#: are dropped, counted and reported (docs/device-link.md, "The outbox").
DEFAULT_OUTBOX_MAX_BYTES = 64 * 1024 * 1024
#: Below this an outbox could not hold one batch of records.
MIN_OUTBOX_MAX_BYTES = 256 * 1024
#: The Local API's port (THINGWIRE_LOCAL_PORT) and the device gateway's admin port
#: (THINGWIRE_AGENT_ENVOY_ADMIN_PORT), as the operator contract fixes them.
DEFAULT_LOCAL_PORT = 9000
DEFAULT_AGENT_ENVOY_ADMIN_PORT = 9902
#: Where the Local API listens (THINGWIRE_AGENT_LOCAL_HOST): this machine only, unless the
#: operator opens it to the hotspot's interface.
DEFAULT_LOCAL_HOST = "127.0.0.1"


class AgentConfigError(ValueError):
    """An environment variable holds a value the agent cannot use."""


@dataclass(frozen=True)
class AgentSettings:
    """What `thingwire agent` needs besides its command-line arguments."""

    state_dir: Path = DEFAULT_STATE_DIR
    outbox_max_bytes: int = DEFAULT_OUTBOX_MAX_BYTES
    local_port: int = DEFAULT_LOCAL_PORT
    local_admin_port: int = DEFAULT_AGENT_ENVOY_ADMIN_PORT
    local_host: str = DEFAULT_LOCAL_HOST
    #: THINGWIRE_AGENT_LOCAL_PASSWORD: when set, the Local API's login checks it and every
    #: other endpoint wants the token (docs/device-side.md, "Access").
    local_password: str | None = None
    #: THINGWIRE_AGENT_UNIT_ID: the cloud's unit id of this device.
    unit_id: str | None = None
    #: THINGWIRE_AGENT_LOCAL_HOSTNAMES: names (besides its addresses and `localhost`) by
    #: which clients reach the Local API; any other Host is refused (DNS rebinding).
    local_hostnames: frozenset[str] = frozenset()

    @property
    def outbox_path(self) -> Path:
        """`<state dir>/outbox.db`: the records waiting for the cloud."""
        return self.state_dir / "outbox.db"

    @property
    def log_dir(self) -> Path:
        """`<state dir>/log`: `syslog` here is what the Local API's `/download_log/` serves."""
        return self.state_dir / "log"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        """Read the THINGWIRE_* variables, falling back to the documented defaults."""
        env = os.environ if env is None else env
        state_dir = env.get("THINGWIRE_AGENT_STATE_DIR", "")
        return cls(
            state_dir=Path(state_dir) if state_dir else cls.state_dir,
            outbox_max_bytes=_outbox_max_bytes(env),
            local_port=_port(env, "THINGWIRE_LOCAL_PORT", DEFAULT_LOCAL_PORT),
            local_admin_port=_port(
                env, "THINGWIRE_AGENT_ENVOY_ADMIN_PORT", DEFAULT_AGENT_ENVOY_ADMIN_PORT
            ),
            local_host=env.get("THINGWIRE_AGENT_LOCAL_HOST") or DEFAULT_LOCAL_HOST,
            local_password=env.get("THINGWIRE_AGENT_LOCAL_PASSWORD") or None,
            unit_id=env.get("THINGWIRE_AGENT_UNIT_ID") or None,
            local_hostnames=frozenset(
                name.strip().lower()
                for name in env.get("THINGWIRE_AGENT_LOCAL_HOSTNAMES", "").split(",")
                if name.strip()
            ),
        )


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    """A port from 1 to 65535 (never 0: the operator contract names every port)."""
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise AgentConfigError(f"{name}={raw!r} is not a port from 1 to 65535")
    return int(raw)


def _outbox_max_bytes(env: Mapping[str, str]) -> int:
    """THINGWIRE_AGENT_OUTBOX_MAX_BYTES: unset is the default, anything else a whole number
    of at least MIN_OUTBOX_MAX_BYTES (an empty value is refused, as on the cloud's side)."""
    name = "THINGWIRE_AGENT_OUTBOX_MAX_BYTES"
    raw = env.get(name)
    if raw is None:
        return DEFAULT_OUTBOX_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise AgentConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < MIN_OUTBOX_MAX_BYTES:
        raise AgentConfigError(f"{name}={value} must be at least {MIN_OUTBOX_MAX_BYTES}")
    return value
