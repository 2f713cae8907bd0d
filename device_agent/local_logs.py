"""The agent's log files as the Local API's `/download_log/?file=` serves them, and only those.

A name comes from whoever can reach port 9000, so it is resolved inside the log directory
and nowhere else (docs/device-side.md, "Logs"). Refused: an empty name, a NUL, an absolute
path, any `..` or empty component, and a symbolic link anywhere on the way, whether it
points inside or outside. The checks run on the name first and then on the file actually
opened (`O_NOFOLLOW` on each component, then `fstat`), so that a link swapped in between
cannot lead out either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["MAX_LOG_BYTES", "BadLogName", "LogNotFound", "read_log"]

#: The most of one log that one answer carries: its end, where the recent lines are.
MAX_LOG_BYTES = 16 * 1024 * 1024
_MAX_NAME_CHARS = 255


class BadLogName(ValueError):
    """A name that does not stay inside the log directory (400)."""


class LogNotFound(LookupError):
    """No log of that name (404)."""


def _components(name: str) -> list[str]:
    if not name or len(name) > _MAX_NAME_CHARS:
        raise BadLogName(f"file must name a log, 1 to {_MAX_NAME_CHARS} characters")
    if "\x00" in name or "\\" in name or name.startswith("/"):
        raise BadLogName("file must be a log's name relative to the log directory")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BadLogName("file must not contain '..', '.' or empty path components")
    return parts


def _open_inside(log_dir: Path, parts: list[str]) -> int:
    """A descriptor of the file, each component opened without following a link."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        # The directory itself is the operator's setting, trusted as given (a link is fine).
        current = os.open(log_dir, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY)
    except OSError as error:
        raise LogNotFound("the agent has written no logs yet") from error
    try:
        for part in parts[:-1]:
            following = os.open(part, flags | os.O_DIRECTORY, dir_fd=current)
            os.close(current)
            current = following
        # O_NONBLOCK: opening a FIFO or a device must not wait for a writer; the caller
        # refuses anything but a regular file (nonblocking changes nothing for those).
        return os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=current)
    except FileNotFoundError as error:
        raise LogNotFound(f"no log named {'/'.join(parts)!r}") from error
    except OSError as error:  # ELOOP: a symbolic link; ENOTDIR: a file on the way
        raise BadLogName(f"{'/'.join(parts)!r} is not a log file of this device") from error
    finally:
        os.close(current)


def read_log(log_dir: Path, name: str) -> bytes:
    """The end of log ``name`` (at most MAX_LOG_BYTES); BadLogName or LogNotFound."""
    descriptor = _open_inside(log_dir, _components(name))
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise BadLogName(f"{name!r} is not a log file of this device")
        start = max(info.st_size - MAX_LOG_BYTES, 0)
        return os.pread(descriptor, MAX_LOG_BYTES, start)
    finally:
        os.close(descriptor)
