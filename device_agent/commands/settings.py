"""How the command registry is configured: what `cmd.run` may do, its timeouts, the Wi-Fi
country (docs/device-commands.md, "Configuration").

Each setting comes from one THINGWIRE_AGENT_* variable; `CommandSettings.from_env` reads
them and refuses a value it cannot use with a message naming the variable.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "DEFAULT_CMD_TIMEOUT_S",
    "MAX_CMD_TIMEOUT_S",
    "CmdRunMode",
    "CommandSettings",
    "StatePaths",
]

CmdRunMode = Literal["enabled", "disabled", "restricted"]

#: `cmd.run` without a `timeout` kwarg stops the command after this long.
DEFAULT_CMD_TIMEOUT_S = 30.0
#: No `timeout` (from the variable or a request) may exceed this: a command runs on behalf
#: of one request, and nobody waits an hour for an answer.
MAX_CMD_TIMEOUT_S = 600.0
#: `cmd.run` keeps at most this much of a command's output; the rest is read and dropped.
DEFAULT_OUTPUT_LIMIT_BYTES = 1024 * 1024
#: The control socket wpa_supplicant opens, and the group allowed to use it (wpa_cli).
DEFAULT_WPA_CTRL_INTERFACE = "DIR=/var/run/wpa_supplicant GROUP=netdev"

#: A program an operator may allow: a bare name looked up on PATH, never a path.
_PROGRAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
#: ISO 3166-1 alpha-2, or wpa_supplicant's "00" (world regulatory domain).
_COUNTRY = re.compile(r"[A-Z]{2}|00")

CMD_RUN_VAR = "THINGWIRE_AGENT_CMD_RUN"
CMD_TIMEOUT_VAR = "THINGWIRE_AGENT_CMD_TIMEOUT"
WIFI_COUNTRY_VAR = "THINGWIRE_AGENT_WIFI_COUNTRY"


@dataclass(frozen=True)
class CommandSettings:
    """What the registry may do. Built directly (tests) or from the environment.

    `cmd_run` is "enabled" (any program, and a shell with ``python_shell=True``),
    "disabled" (every `cmd.run` is refused) or "restricted" (only the programs named in
    `cmd_run_allowed`, never a shell).
    """

    cmd_run: CmdRunMode = "enabled"
    cmd_run_allowed: frozenset[str] = field(default_factory=frozenset)
    cmd_timeout_s: float = DEFAULT_CMD_TIMEOUT_S
    cmd_timeout_max_s: float = MAX_CMD_TIMEOUT_S
    cmd_output_limit_bytes: int = DEFAULT_OUTPUT_LIMIT_BYTES
    wifi_country: str = "US"
    wpa_ctrl_interface: str = DEFAULT_WPA_CTRL_INTERFACE

    def __post_init__(self) -> None:
        if self.cmd_run not in ("enabled", "disabled", "restricted"):
            raise ValueError(f"cmd_run must be enabled, disabled or restricted: {self.cmd_run!r}")
        if self.cmd_run == "restricted" and not self.cmd_run_allowed:
            raise ValueError("cmd_run 'restricted' needs at least one allowed program")
        for name in self.cmd_run_allowed:
            if not _PROGRAM_NAME.fullmatch(name):
                raise ValueError(
                    f"allowed program {name!r} must be a bare program name "
                    "(letters, digits, '.', '_', '+', '-'; no path)"
                )
        if not _valid_timeout(self.cmd_timeout_max_s, math.inf):
            raise ValueError(f"cmd_timeout_max_s must be > 0: {self.cmd_timeout_max_s!r}")
        if not _valid_timeout(self.cmd_timeout_s, self.cmd_timeout_max_s):
            raise ValueError(
                f"cmd_timeout_s must be > 0 and at most {self.cmd_timeout_max_s:g} s: "
                f"{self.cmd_timeout_s!r}"
            )
        if self.cmd_output_limit_bytes < 1:
            raise ValueError("cmd_output_limit_bytes must be at least 1")
        if not _COUNTRY.fullmatch(self.wifi_country):
            raise ValueError(
                f"wifi_country must be a two-letter ISO 3166-1 code such as 'US' or 'DE' "
                f"(or '00'): {self.wifi_country!r}"
            )
        if any(ch in self.wpa_ctrl_interface for ch in "\r\n\0"):
            raise ValueError("wpa_ctrl_interface must be one line")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CommandSettings:
        """Read THINGWIRE_AGENT_CMD_RUN, THINGWIRE_AGENT_CMD_TIMEOUT and
        THINGWIRE_AGENT_WIFI_COUNTRY; unset (or empty) means the default.

        Raises ValueError naming the variable when a value cannot be used.
        """
        env = os.environ if env is None else env
        mode, allowed = _cmd_run(env.get(CMD_RUN_VAR, ""))
        timeout = _timeout(env.get(CMD_TIMEOUT_VAR, ""))
        country = env.get(WIFI_COUNTRY_VAR, "").strip().upper() or "US"
        if not _COUNTRY.fullmatch(country):
            raise ValueError(
                f"{WIFI_COUNTRY_VAR}={env.get(WIFI_COUNTRY_VAR)!r} is not a two-letter "
                "ISO 3166-1 country code such as US or DE (or 00, the world domain)"
            )
        return cls(cmd_run=mode, cmd_run_allowed=allowed, cmd_timeout_s=timeout,
                   wifi_country=country)  # fmt: skip


@dataclass(frozen=True)
class StatePaths:
    """Where the registry keeps its files under the agent's state directory
    (THINGWIRE_AGENT_STATE_DIR)."""

    state_dir: Path

    @property
    def grains(self) -> Path:
        """`<state dir>/grains.json`: every grain set with `grains.set`/`grains.setval`."""
        return self.state_dir / "grains.json"

    @property
    def apn(self) -> Path:
        """`<state dir>/settings/apn.json`: the Local API's APN settings."""
        return self.state_dir / "settings" / "apn.json"

    @property
    def rendered(self) -> Path:
        """`<state dir>/rendered/`: configuration files rendered by `state.sls`."""
        return self.state_dir / "rendered"


def _cmd_run(raw: str) -> tuple[CmdRunMode, frozenset[str]]:
    """'enabled' | 'disabled' | a comma-separated list of program names (restricted)."""
    value = raw.strip()
    if value.lower() in ("", "enabled"):
        return "enabled", frozenset()
    if value.lower() == "disabled":
        return "disabled", frozenset()
    names = [part.strip() for part in value.split(",")]
    bad = [name for name in names if not _PROGRAM_NAME.fullmatch(name)]
    if bad:
        raise ValueError(
            f"{CMD_RUN_VAR}={raw!r}: expected 'enabled', 'disabled' or a comma-separated list "
            f"of program names (no paths, no empty entries); not a program name: "
            f"{', '.join(repr(name) for name in bad)}"
        )
    return "restricted", frozenset(names)


def _timeout(raw: str) -> float:
    """Seconds, > 0 and at most MAX_CMD_TIMEOUT_S; unset is DEFAULT_CMD_TIMEOUT_S."""
    value = raw.strip()
    if not value:
        return DEFAULT_CMD_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not _valid_timeout(seconds, MAX_CMD_TIMEOUT_S):
        raise ValueError(
            f"{CMD_TIMEOUT_VAR}={raw!r} must be a number of seconds greater than 0 and at "
            f"most {MAX_CMD_TIMEOUT_S:g}"
        )
    return seconds


def _valid_timeout(seconds: float, maximum: float) -> bool:
    return math.isfinite(seconds) and 0 < seconds <= maximum
