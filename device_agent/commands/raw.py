"""How `execute_raw` reads a command line (docs/device-commands.md, "execute_raw").

The first word is the command. For `cmd.run` the rest of the line, untouched, is the
command line it runs (and `cmd.run` splits it shell-style itself, without a shell). For
every other command the rest is split shell-style into words: ``key=value`` (a valid
identifier before the ``=``) is a keyword argument, any other word a positional one. A value
is read as JSON when it is JSON (``5``, ``true``, ``[1, 2]``, ``{"a": 1}``), as true, false
or null when it is one of salt's YAML spellings of them (``True``, ``False``, ``None``,
``~``), and as the text itself otherwise. NaN and Infinity stay text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection
from typing import Any

from device_agent.commands import bodies
from device_agent.commands.errors import CommandError
from device_agent.commands.values import kind

__all__ = ["parse_value", "split_raw"]

_LINE = re.compile(r"\s*(\S+)(?:\s+(.*?))?\s*", re.DOTALL)
_KEYWORD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_WORDS: dict[str, Any] = {
    "true": True, "True": True, "TRUE": True,
    "false": False, "False": False, "FALSE": False,
    "null": None, "Null": None, "NULL": None, "None": None, "~": None,
}  # fmt: skip


def split_raw(
    line: Any, raw_line_commands: Collection[str] = ()
) -> tuple[str, list[Any], dict[str, Any]]:
    """(command, args, kwargs) for one raw command line; CommandError if it has no command."""
    if not isinstance(line, str):
        raise CommandError(f"the command must be a string, not {kind(line)}")
    match = _LINE.fullmatch(line)
    if match is None:
        raise CommandError("the command is empty")
    command, rest = match.group(1), match.group(2) or ""
    if command in raw_line_commands:
        return command, [rest] if rest else [], {}
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise CommandError(f"cannot split the command line: {exc}") from None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for word in words:
        keyword = _KEYWORD.fullmatch(word)
        if keyword:
            kwargs[keyword.group(1)] = parse_value(keyword.group(2))
        else:
            args.append(parse_value(word))
    return command, args, kwargs


def parse_value(text: str) -> Any:
    """One word's value: JSON if it parses, salt's true/false/null spellings, else text."""
    if text in _WORDS:
        return _WORDS[text]
    try:
        return bodies.strict_json(text.encode())
    except CommandError:  # not JSON (or a number beyond a double): the word as text
        return text
