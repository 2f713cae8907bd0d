"""Files the agent keeps under its state directory, written so that a crash never leaves half
of one (docs/device-commands.md, "State files").

A write goes to a temporary file in the same directory, is flushed to disk, and replaces the
old file in one `os.replace`; the directory is flushed too, so that the rename itself
survives a power cut. A reader therefore sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["StateFileError", "read_json", "read_text", "write_atomically", "write_json"]

#: Temporary files are named so that a leftover from a crash is recognisable (and ignored).
TEMP_PREFIX = ".tmp-"


class StateFileError(Exception):
    """A state file exists but cannot be used (unreadable, not JSON): the caller decides what
    the device answers; the file is left as it is, so nothing is lost silently."""


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` in one step; parent directories are created (owner-only).

    `mode` is applied to the new file before it takes the old one's place, so a secret (a
    Wi-Fi passphrase, an APN password) is never readable by others, not even briefly.
    """
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=f"-{path.name}", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def write_json(path: Path, value: Any, mode: int = 0o600) -> None:
    """`write_atomically` of `value` as indented, key-sorted UTF-8 JSON (diffable by hand)."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    write_atomically(path, (text + "\n").encode("utf-8"), mode)


def read_json(path: Path, default: Any) -> Any:
    """The JSON value in `path`, or `default` when the file does not exist.

    A file that exists but cannot be read or parsed raises `StateFileError` naming it: a
    corrupt state file is reported, never silently replaced by the default.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return default
    except OSError as exc:
        raise StateFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateFileError(f"{path} is not valid JSON ({exc}); fix or remove it") from exc


def read_text(path: Path) -> str | None:
    """The UTF-8 text of `path`, or None when it does not exist (a file not yet rendered)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateFileError(f"cannot read {path}: {exc}") from exc


def _fsync_directory(directory: Path) -> None:
    """Flush the directory entry so that the rename survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
