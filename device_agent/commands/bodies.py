"""The bodies of the Local API's `execute/` and `execute_raw/`, read by one rule on both faces:
the device's Local API and the cloud's relay of the same requests (docs/device-commands.md,
"Request bodies").

Checked strictly before anything runs, so that the caller learns which key is wrong:
- `execute/` takes `{"command", "arg", "kwarg"}`. `arg` and `kwarg` may be left out or
  null (no arguments); a lone `arg` that is not a list is a list of one, as salt takes it;
  any other key is refused. It also takes a salt argument list, `["grains.get", "foo"]`.
- `execute_raw/` takes `{"command": "<command and its arguments>"}` and nothing else.

The JSON is strict: valid UTF-8, no NaN or Infinity, no number beyond a double, no lone
surrogate, at most MAX_DEPTH levels deep. Every refusal is a CommandError (400).
"""

from __future__ import annotations

import json
from typing import Any

from device_agent.commands.errors import CommandError

__all__ = ["NOT_JSON", "encode_result", "parse_execute", "parse_execute_raw", "strict_json"]

NOT_JSON = "the body must be valid JSON"
EXECUTE_SHAPE = 'the body must be {"command": ..., "arg": [...], "kwarg": {...}}'
RAW_SHAPE = 'the body must be {"command": "<command and its arguments>"}'


#: Nesting deeper than this is refused: no command takes it, and copying it recurses.
MAX_DEPTH = 32


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float; one beyond a double (1e400) is refused, not infinity."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:32]} is beyond a double")
    return value


def _check_value(value: Any) -> None:
    """ValueError for nesting past MAX_DEPTH or a lone surrogate (not text in UTF-8)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"the body nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            item.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate
        elif isinstance(item, list):
            pending.extend((element, depth + 1) for element in item)
        elif isinstance(item, dict):
            pending.extend((key, depth + 1) for key in item)
            pending.extend((element, depth + 1) for element in item.values())


def strict_json(data: bytes) -> Any:
    """``data`` as strict JSON (no NaN or Infinity, UTF-8); CommandError otherwise."""
    try:
        value = json.loads(
            data.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CommandError(NOT_JSON) from None
    try:
        _check_value(value)
    except ValueError as error:
        raise CommandError(f"{NOT_JSON}: {error}") from None
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CommandError("command must be a non-empty string")
    return value


def parse_execute(data: bytes) -> tuple[str, list[Any], dict[str, Any]]:
    """An `execute/` body as (command, args, kwargs)."""
    body = strict_json(data)
    if isinstance(body, list):
        if not body:
            raise CommandError("a command list starts with the command's name")
        return _name(body[0]), list(body[1:]), {}
    if not isinstance(body, dict):
        raise CommandError(EXECUTE_SHAPE)
    unknown = sorted(set(body) - {"command", "arg", "kwarg"})
    if unknown:
        raise CommandError(f"unknown key {unknown[0]!r}: the keys are command, arg, kwarg")
    command = _name(body.get("command"))
    args = body.get("arg")
    if args is None:
        args = []
    elif not isinstance(args, list):
        args = [args]
    kwargs = body.get("kwarg")
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict):
        raise CommandError("kwarg must be a JSON object")
    return command, args, kwargs


def parse_execute_raw(data: bytes) -> str:
    """An `execute_raw/` body as its command line."""
    body = strict_json(data)
    if not isinstance(body, dict) or set(body) != {"command"}:
        raise CommandError(RAW_SHAPE)
    return _name(body["command"])


def encode_result(value: Any) -> bytes:
    """A command's result as the JSON both faces answer (UTF-8, compact). TypeError or
    ValueError for a value JSON cannot carry (NaN, an object): a registry bug, 502."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
