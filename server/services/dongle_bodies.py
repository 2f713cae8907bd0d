"""The bodies of the Local API's `execute/` and `execute_raw/`, as the cloud relay reads them
(docs/device-link.md, "Commands").

Checked strictly before anything reaches a device: one JSON object (orjson: no NaN, no
trailing text), only the documented keys, each of its type. A body the device could not run
costs no call on its link, and the caller learns which key is wrong.
"""

from __future__ import annotations

from typing import Any

import orjson
from thingwire.agent.v1 import agent_pb2

from server import errors
from server.link import commands

NOT_JSON = "the body is not valid JSON"
NOT_OBJECT = "the body must be a JSON object"
EXECUTE_KEYS = ("command", "arg", "kwarg")
RAW_KEYS = ("command",)


def _object(data: bytes, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The body as a dict with no key outside `allowed`; InvalidArgument otherwise."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise errors.InvalidArgument(f"{NOT_JSON}: {error}") from None
    if not isinstance(body, dict):
        raise errors.InvalidArgument(NOT_OBJECT)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise errors.InvalidArgument(
            f"unknown key {unknown[0]!r}: the body takes {', '.join(allowed)}"
        )
    return body


def _command(body: dict[str, Any], what: str) -> str:
    command = body.get("command")
    if not isinstance(command, str) or not command.strip():
        raise errors.InvalidArgument(f'"command" must be a non-empty string ({what})')
    return command


def parse_execute(data: bytes) -> agent_pb2.Command:
    """`{"command": "cmd.run", "arg": ["ls", "-l"], "kwarg": {}}` as a Command; `arg` and
    `kwarg` may be left out (no arguments), not set to another type (null included)."""
    body = _object(data, EXECUTE_KEYS)
    command = _command(body, "a command name such as cmd.run")
    args = body.get("arg", [])
    if not isinstance(args, list):
        raise errors.InvalidArgument('"arg" must be an array')
    kwargs = body.get("kwarg", {})
    if not isinstance(kwargs, dict):
        raise errors.InvalidArgument('"kwarg" must be an object')
    return commands.structured(command, args, kwargs)


def parse_execute_raw(data: bytes) -> agent_pb2.Command:
    """`{"command": "cmd.run ls -l"}` as a Command: one line, split on the device."""
    body = _object(data, RAW_KEYS)
    return commands.raw(_command(body, "a command line such as cmd.run ls -l"))


__all__ = ["parse_execute", "parse_execute_raw"]
