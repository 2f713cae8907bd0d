"""Salt-style commands relayed to a device over its link (docs/device-link.md, "Commands").

The cloud's `execute/` and `execute_raw/` run what the device's Local API would run, and
answer what it would answer: the result is one JSON value, passed on as the bytes the device
wrote; a failure carries the HTTP status the Local API gives it, and the caller gets that
status. Anything else a device might send (a 500, no outcome, bytes that are not JSON) is a
device failing in a way it did not foresee: 502, never a 500 that would look like ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from thingwire.agent.v1 import agent_pb2

from server import errors

#: How long a throttled caller is told to wait (the link's own RETRY_AFTER_SECONDS).
RETRY_AFTER_SECONDS = 1
#: What a caller is told when the device gave no usable answer.
NO_OUTCOME = "the device answered the command with no result"
NOT_JSON_RESULT = "the device's result is not JSON"
FAILED = "the device's command failed"


def structured(command: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> agent_pb2.Command:
    """The Command of `execute/`: the name, the arguments as JSON (no call id yet)."""
    return agent_pb2.Command(
        structured=agent_pb2.StructuredCommand(
            command=command, args_json=orjson.dumps(list(args)), kwargs_json=orjson.dumps(kwargs)
        )
    )


def raw(line: str) -> agent_pb2.Command:
    """The Command of `execute_raw/`: one command line, split on the device."""
    return agent_pb2.Command(raw_line=line)


def failure_error(status: int, message: str) -> errors.ThingwireError:
    """The domain error of a device's CommandFailure: the status the device's Local API
    would answer, with the device's message.

    The Local API's statuses keep their meaning (400, 413, 429, 503, 504); any other 4xx
    is the caller's mistake (400); anything else, 500 included, is the device failing
    (502), so that a crash on a device never reads as the cloud's own 500.
    """
    text = message or FAILED
    if status == 413:
        return errors.PayloadTooLarge(text)
    if status == 429:
        return errors.Throttled(text, RETRY_AFTER_SECONDS)
    if status == 503:
        return errors.Unavailable(text)
    if status == 504:
        return errors.DeadlineExceeded(text)
    if 400 <= status < 500:
        return errors.InvalidArgument(text)
    return errors.BadGateway(text)


def outcome(result: agent_pb2.CommandResult) -> bytes:
    """The JSON bytes of a successful result; the failure's domain error otherwise.

    The bytes are checked to be one JSON value (orjson is strict: no NaN, no trailing text),
    since they become the REST answer with content type application/json as they are.
    """
    which = result.WhichOneof("outcome")
    if which == "failure":
        raise failure_error(result.failure.status, result.failure.message)
    if which != "result_json":
        raise errors.BadGateway(NO_OUTCOME)
    try:
        orjson.loads(result.result_json)
    except orjson.JSONDecodeError:
        raise errors.BadGateway(NOT_JSON_RESULT) from None
    return result.result_json


__all__ = ["failure_error", "outcome", "raw", "structured"]
