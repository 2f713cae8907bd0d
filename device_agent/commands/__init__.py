"""Salt-style commands run on the device: the registry behind the Local API's `execute/` and
`execute_raw/`, and behind the cloud's relay of the same requests over the link.

The one interface both faces use is `CommandRunner`; what a command may fail with is in
`device_agent.commands.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from device_agent.commands.errors import CommandError, CommandTimeout, CommandUnavailable

__all__ = ["CommandError", "CommandRunner", "CommandTimeout", "CommandUnavailable"]


class CommandRunner(Protocol):
    """Runs one salt-style command and returns its result as JSON-ready values."""

    async def execute(self, command: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """``{"command": "grains.get", "arg": ["foo"], "kwarg": {}}`` as salt runs it."""
        ...

    async def execute_raw(self, line: str) -> Any:
        """``"cmd.run ls -l"``: the command and its arguments in one shell-style line."""
        ...
