"""The device's side of a relayed command: one Command in, one CommandResult out
(docs/device-link.md, "Commands").

The agent hands every Command of its link to `answer`, in a task of its own, with the
`CommandRunner` it was given (the same registry the Local API's `execute/` uses, so both
faces run a command alike). Failures become the status and message the Local API would
answer: a `CommandError`'s own status, and 502 for anything the runner did not foresee, so
that a crash on the device never reaches a caller as a 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from thingwire.agent.v1 import agent_pb2

from device_agent.commands import CommandError, CommandRunner, bodies

log = logging.getLogger(__name__)

#: What a command answers on an agent that was given no runner.
NO_COMMANDS = "commands are not available on this agent"
#: The status of a failure the runner did not foresee (a bug, a result JSON cannot carry).
UNFORESEEN_STATUS = 502


class NoCommands:
    """The runner of an agent without commands: every command is refused (400)."""

    async def execute(self, command: str, args: Any, kwargs: Any) -> Any:
        raise CommandError(NO_COMMANDS)

    async def execute_raw(self, line: str) -> Any:
        raise CommandError(NO_COMMANDS)


def failure(call_id: int, status: int, message: str) -> agent_pb2.CommandResult:
    return agent_pb2.CommandResult(
        call_id=call_id, failure=agent_pb2.CommandFailure(status=status, message=message)
    )


async def run(runner: CommandRunner, command: agent_pb2.Command) -> Any:
    """The runner's result for `command` (structured or one raw line)."""
    if command.WhichOneof("call") == "raw_line":
        return await runner.execute_raw(command.raw_line)
    structured = command.structured
    try:
        args = json.loads(structured.args_json) if structured.args_json else []
        kwargs = json.loads(structured.kwargs_json) if structured.kwargs_json else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise CommandError("the command's arguments are not JSON") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise CommandError("the command's arguments must be an array and an object")
    return await runner.execute(structured.command, args, kwargs)


async def answer(runner: CommandRunner, command: agent_pb2.Command) -> agent_pb2.CommandResult:
    """Run `command` and say how it ended. TimeoutError (its deadline) and cancellation
    pass through: the agent answers nothing for a call the server gave up on."""
    call_id = command.call_id
    try:
        result = await run(runner, command)
    except CommandError as error:
        status = int(getattr(error, "status", 400))
        return failure(call_id, status, str(error) or type(error).__name__)
    except TimeoutError:
        raise
    except Exception as error:  # the runner's bug is the caller's answer, not the link's end
        log.warning("command %r failed: %r", _name(command), error)
        return failure(
            call_id, UNFORESEEN_STATUS, f"the command failed on the device: {_describe(error)}"
        )
    try:
        data = bodies.encode_result(result)
    except (TypeError, ValueError) as error:
        return failure(
            call_id, UNFORESEEN_STATUS, f"the command's result is not JSON: {_describe(error)}"
        )
    return agent_pb2.CommandResult(call_id=call_id, result_json=data)


def _name(command: agent_pb2.Command) -> str:
    if command.WhichOneof("call") == "raw_line":
        return command.raw_line
    return command.structured.command


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


__all__ = ["NO_COMMANDS", "NoCommands", "answer", "failure"]
