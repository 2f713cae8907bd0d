"""Salt-style commands run on the device: the registry behind the Local API's `execute/` and
`execute_raw/`, and behind the cloud's relay of the same requests over the link.

The one interface both faces use is `CommandRunner`; what a command may fail with is in
`device_agent.commands.errors`. docs/device-commands.md lists the commands and their shapes.

Wiring it in::

    settings = CommandSettings.from_env()        # THINGWIRE_AGENT_CMD_RUN, _CMD_TIMEOUT,
                                                 # _WIFI_COUNTRY; ValueError if one is bad
    apn = ApnSettings(state_dir)                 # GET/PUT /settings/apn/: get(), put(body)
    commands = Commands(state_dir, settings, apn)  # a CommandRunner
    await commands.execute("grains.get", ["wpa_supplicant:networks"], {})
    await commands.execute_raw("cmd.run ls -l")

`Commands(state_dir: Path, settings: CommandSettings | None = None,
apn: ApnSettings | None = None)`: `state_dir` is THINGWIRE_AGENT_STATE_DIR; its files are
named by `StatePaths(state_dir)` (grains.json, settings/apn.json, rendered/). `ApnSettings`
is synchronous (small fsynced files): on an event loop, call it through `asyncio.to_thread`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from device_agent.commands.errors import (
    CommandBadAnswer,
    CommandError,
    CommandTimeout,
    CommandUnavailable,
)

__all__ = [
    "ApnSettings",
    "CommandBadAnswer",
    "CommandError",
    "CommandRunner",
    "CommandSettings",
    "CommandTimeout",
    "CommandUnavailable",
    "Commands",
    "StatePaths",
]


class CommandRunner(Protocol):
    """Runs one salt-style command and returns its result as JSON-ready values."""

    async def execute(self, command: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """``{"command": "grains.get", "arg": ["foo"], "kwarg": {}}`` as salt runs it."""
        ...

    async def execute_raw(self, line: str) -> Any:
        """``"cmd.run ls -l"``: the command and its arguments in one shell-style line."""
        ...


# After CommandRunner: the registry's modules import the errors from this package.
from device_agent.commands.apn import ApnSettings  # noqa: E402
from device_agent.commands.registry import Commands  # noqa: E402
from device_agent.commands.settings import CommandSettings, StatePaths  # noqa: E402
