"""The bodies of the Local API's `execute/` and `execute_raw/`, as the cloud relay reads them
(docs/device-link.md, "Commands").

The rule is the device's own (`device_agent.commands.bodies`): the relay answers a body
exactly as the device's Local API would, and a body the device could not run costs no call
on its link.
"""

from __future__ import annotations

from thingwire.agent.v1 import agent_pb2

from device_agent.commands import CommandError, bodies
from server import errors
from server.link import commands


def parse_execute(data: bytes) -> agent_pb2.Command:
    """`{"command": "cmd.run", "arg": ["ls", "-l"], "kwarg": {}}` as a Command."""
    try:
        command, args, kwargs = bodies.parse_execute(data)
    except CommandError as error:
        raise errors.InvalidArgument(str(error)) from None
    return commands.structured(command, args, kwargs)


def parse_execute_raw(data: bytes) -> agent_pb2.Command:
    """`{"command": "cmd.run ls -l"}` as a Command: one line, split on the device."""
    try:
        line = bodies.parse_execute_raw(data)
    except CommandError as error:
        raise errors.InvalidArgument(str(error)) from None
    return commands.raw(line)


__all__ = ["parse_execute", "parse_execute_raw"]
