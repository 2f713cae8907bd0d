"""`thingwire agent` with a `CommandRunner` for tests, in place of the device's registry.

    python -m tests.integration.command_agent_process [the options of `thingwire agent`]

It is the command's agent (the same options, log, signals and exit codes:
`device_agent.cli`) given `TestCommands`, so that the cloud's relay can be shown end to end
while the real registry is built separately; tests/integration/test_command_relay.py starts
it (`CommandAgentProcess`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from device_agent.cli import build_agent, build_parser, serve
from device_agent.commands import CommandError

log = logging.getLogger("tests.commands")


class TestCommands:
    """`test.echo` gives its arguments back, `test.true` and `test.string` bare JSON values,
    `test.sleep` never ends (a slow device), `test.crash` raises what no runner should; any
    other name is refused as the registry refuses it. A raw line comes back as
    `{"line": ...}`."""

    async def execute(self, command: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        log.info("command %s", command)
        if command == "test.echo":
            return {"args": list(args), "kwargs": dict(kwargs)}
        if command == "test.true":
            return True
        if command == "test.string":
            return "total 0\n"
        if command == "test.sleep":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log.info("command cancelled")
                raise
        if command == "test.crash":
            raise RuntimeError("boom")
        raise CommandError(f"'{command}' is not available")

    async def execute_raw(self, line: str) -> Any:
        log.info("raw command %s", line)
        return {"line": line}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    agent = build_agent(args)
    agent.commands = TestCommands()
    return serve(agent, args.server)


if __name__ == "__main__":
    sys.exit(main())
