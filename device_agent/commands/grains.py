"""Grains: the device's own key/value store, with salt's `grains.*` semantics
(docs/device-commands.md, "grains.*").

All grains live in one JSON object, `<state dir>/grains.json`, read on every call and
replaced atomically on every change, so they survive restarts and a crash never leaves half
a file. A file that cannot be parsed is reported (CommandUnavailable) and left as it is:
grains are never lost silently.

The functions below work on a copy of that object and follow salt's `grains` execution
module: nested keys with a delimiter (``:``), `set` that will not overwrite a dict or a
list (nor put one over a value) unless `force`, and `destructive`, which removes a key
whose value becomes None instead of keeping it as null.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device_agent.commands.errors import CommandError, CommandUnavailable
from device_agent.commands.settings import StatePaths
from device_agent.state_files import StateFileError, read_json, write_json

__all__ = [
    "DEFAULT_DELIMITER",
    "GrainStore",
    "Result",
    "check_key",
    "delkey",
    "get",
    "set_grain",
    "setval",
]

DEFAULT_DELIMITER = ":"
#: salt's return of grains.set and grains.delkey: {"changes", "comment", "result"}.
Result = dict[str, Any]
_MISSING = object()


class GrainStore:
    """The grains file: `read` a snapshot, or `update` it with a function that returns salt's
    result and whether the grains changed. Thread-safe; synchronous (callers on an event
    loop run it in a thread: each change is fsynced)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = StatePaths(state_dir).grains
        self._lock = threading.Lock()

    def read(self) -> dict[str, Any]:
        """Every grain (a fresh object the caller may keep)."""
        with self._lock:
            return self._load()

    def update(self, change: Callable[[dict[str, Any]], tuple[Any, bool]]) -> Any:
        """Apply `change` to a copy of the grains; store the copy if it reports a change."""
        with self._lock:
            grains = self._load()
            result, changed = change(grains)
            if changed:
                try:
                    write_json(self.path, grains)
                except (TypeError, ValueError) as exc:
                    raise CommandError(f"the value cannot be stored as JSON: {exc}") from exc
                except OSError as exc:
                    raise CommandUnavailable(f"cannot store the grains: {exc}") from exc
            return result

    def _load(self) -> dict[str, Any]:
        try:
            grains = read_json(self.path, {})
        except StateFileError as exc:
            raise CommandUnavailable(f"the grains cannot be read: {exc}") from exc
        if not isinstance(grains, dict):
            raise CommandUnavailable(
                f"the grains cannot be read: {self.path} does not hold a JSON object; "
                "fix or remove it"
            )
        return grains


def get(grains: dict[str, Any], key: str, default: Any = "", delimiter: str = ":") -> Any:
    """salt's `grains.get`: follow `key` through nested objects and arrays.

    In an array, a part of the key is an index if it is a whole number; otherwise the first
    object in the array that has that key is followed (salt's traverse_dict_and_list).
    """
    pointer: Any = grains
    for part in key.split(delimiter):
        if isinstance(pointer, list):
            try:
                index = int(part)
            except ValueError:
                embedded = [item for item in pointer if isinstance(item, dict) and part in item]
                if not embedded:
                    return default
                pointer = embedded[0][part]
            else:
                if not -len(pointer) <= index < len(pointer):
                    return default
                pointer = pointer[index]
        elif isinstance(pointer, dict) and part in pointer:
            pointer = pointer[part]
        else:
            return default
    return pointer


def setval(grains: dict[str, Any], key: str, value: Any, destructive: bool = False) -> Any:
    """salt's `grains.setval`: set one top-level grain (no nesting); returns ``{key: value}``.

    With `destructive`, a None value removes the grain instead of storing null.
    """
    if value is None and destructive:
        grains.pop(key, None)
    else:
        grains[key] = value
    return {key: value}


def set_grain(
    grains: dict[str, Any],
    key: str,
    value: Any,
    *,
    force: bool = False,
    destructive: bool = False,
    delimiter: str = DEFAULT_DELIMITER,
) -> tuple[Result, bool]:
    """salt's `grains.set` on `grains` (changed in place); returns (result, changed).

    Conservative like salt: an existing dict or list is not overwritten, nor a value
    replaced by a dict or a list, unless `force`. `destructive` removes a key whose new
    value is None. `changes` holds the top-level grain as it now is.
    """
    result: Result = {"changes": {}, "comment": "", "result": True}
    existing = get(grains, key, _MISSING, delimiter)
    if existing is not _MISSING and existing == value and (value is not None or not destructive):
        result["comment"] = "Grain is already set"
        return result, False
    if existing is _MISSING and value is None and destructive:
        result["comment"] = f"Grain '{key}' is not set"
        return result, False
    if not force and existing is not _MISSING and existing is not None:
        if _is_complex(existing):
            return _failed(
                result,
                f"The key '{key}' exists but is a dict or a list. Use 'force=True' to overwrite.",
            )
        if _is_complex(value):
            return _failed(
                result,
                f"The key '{key}' exists and the given value is a dict or a list. "
                "Use 'force=True' to overwrite.",
            )
    # Walk up from the innermost key, setting each level into its parent (as salt does).
    while delimiter in key:
        key, rest = key.rsplit(delimiter, 1)
        parent = get(grains, key, {}, delimiter)
        if isinstance(parent, dict):
            if value is None and destructive:
                parent.pop(rest, None)
            else:
                parent[rest] = value
        elif isinstance(parent, list):
            updated = False
            for index, item in enumerate(parent):
                if item == rest:
                    parent[index] = {rest: value}
                    updated = True
                elif isinstance(item, dict) and rest in item:
                    item[rest] = value
                    updated = True
            if not updated:
                parent.append({rest: value})
        elif parent == rest or force:
            parent = {rest: value}
        else:
            return _failed(
                result,
                f"The key '{key}' value is {parent!r}, which is different from the provided "
                f"key '{rest}'. Use 'force=True' to overwrite.",
            )
        value = parent
    result["changes"] = setval(grains, key, copy.deepcopy(value), destructive=destructive)
    return result, True


def delkey(grains: dict[str, Any], key: str, *, force: bool = False) -> tuple[Result, bool]:
    """salt's `grains.delkey`: remove the key and its value (`set` to None, destructive)."""
    return set_grain(grains, key, None, force=force, destructive=True)


def _is_complex(value: Any) -> bool:
    return isinstance(value, dict | list)


def _failed(result: Result, comment: str) -> tuple[Result, bool]:
    result["comment"] = comment
    result["result"] = False
    return result, False


def check_key(command: str, key: Any, delimiter: Any = DEFAULT_DELIMITER) -> None:
    """A grain key is a non-empty string, the delimiter a non-empty string."""
    if not isinstance(key, str) or not key:
        raise CommandError(f"{command}: the key must be a non-empty string")
    if not isinstance(delimiter, str) or not delimiter:
        raise CommandError(f"{command}: the delimiter must be a non-empty string")
