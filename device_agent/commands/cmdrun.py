"""`cmd.run`: run a program on the device and answer its output, as salt's `cmd.run` does
(docs/device-commands.md, "cmd.run").

No shell is involved unless the caller asks for one (``python_shell=True``) and the
configuration allows it: the arguments go to the program as they are, so `$(id); rm -rf /`
is just text. stdout and stderr are merged and trailing whitespace is stripped, as salt does.
The program runs in its own process group, with a cookie in its environment that every
process it starts inherits. When it outlives its timeout (or the request is cancelled) the
group is killed, and so is every process still carrying the cookie, so that one which left
the group (`setsid`, a daemon) is not left running either. Only a process that clears its
environment escapes that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from device_agent.commands.errors import CommandError, CommandTimeout
from device_agent.commands.settings import CMD_RUN_VAR, CommandSettings
from device_agent.commands.values import as_seconds, kind

__all__ = ["CmdRun", "Completed", "command_argv", "plan", "run"]

log = logging.getLogger(__name__)

#: The environment variable that marks every process of one command (see the docstring).
COOKIE_VAR = "THINGWIRE_COMMAND_COOKIE"

#: The shell `python_shell=True` runs the command line with.
SHELL = "/bin/sh"
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class CmdRun:
    """What one `cmd.run` call runs: the program's argv, its cwd and its timeout."""

    argv: tuple[str, ...]
    cwd: str | None
    timeout_s: float
    rstrip: bool


def command_argv(
    settings: CommandSettings, args: Sequence[Any], cmd: Any, python_shell: Any
) -> tuple[str, ...]:
    """The argv for `cmd.run`'s arguments, or CommandError if they are not allowed.

    ``["ls", "-l"]`` (or ``cmd=["ls", "-l"]``) is the program and its arguments; a single
    string is a command line split as a POSIX shell would split words (quotes, backslashes),
    without expanding anything. With ``python_shell=True`` the command line goes to /bin/sh.
    """
    if not isinstance(python_shell, bool):
        raise CommandError(f"cmd.run: python_shell must be true or false, not {kind(python_shell)}")
    if settings.cmd_run == "disabled":
        raise CommandError(f"cmd.run is disabled on this device ({CMD_RUN_VAR}=disabled)")
    if cmd is not None:
        if args:
            raise CommandError("cmd.run: give the command as arguments or as 'cmd', not both")
        args = [cmd]
    if len(args) == 1 and isinstance(args[0], list | tuple):
        args = args[0]
    words = [_word(value) for value in args]
    if not words:
        raise CommandError("cmd.run: no command given")
    if python_shell:
        if settings.cmd_run != "enabled":
            raise CommandError(
                f"cmd.run: python_shell is not allowed while cmd.run is restricted ({CMD_RUN_VAR})"
            )
        line = words[0] if len(words) == 1 else " ".join(words)
        return (SHELL, "-c", line)
    if len(words) == 1:
        try:
            words = shlex.split(words[0])
        except ValueError as exc:
            raise CommandError(f"cmd.run: cannot split the command line: {exc}") from None
        if not words:
            raise CommandError("cmd.run: no command given")
    if settings.cmd_run == "restricted" and words[0] not in settings.cmd_run_allowed:
        allowed = ", ".join(sorted(settings.cmd_run_allowed))
        raise CommandError(
            f"cmd.run: {words[0]!r} is not allowed; this device runs only {allowed} ({CMD_RUN_VAR})"
        )
    return tuple(words)


def plan(
    settings: CommandSettings,
    args: Sequence[Any],
    *,
    cmd: Any = None,
    cwd: Any = None,
    timeout: Any = None,
    python_shell: Any = False,
    rstrip: Any = True,
) -> CmdRun:
    """Check every argument of one `cmd.run` before anything runs."""
    argv = command_argv(settings, args, cmd, python_shell)
    if timeout is None:
        timeout_s = settings.cmd_timeout_s
    else:
        seconds = as_seconds(timeout)
        if seconds is None or not 0 < seconds <= settings.cmd_timeout_max_s:
            raise CommandError(
                f"cmd.run: timeout must be a number of seconds greater than 0 and at most "
                f"{settings.cmd_timeout_max_s:g}, not {kind(timeout)}"
            )
        timeout_s = seconds
    if cwd is not None and (
        not isinstance(cwd, str) or not os.path.isabs(cwd) or not os.path.isdir(cwd)
    ):
        raise CommandError(f"cmd.run: cwd {cwd!r} is not an absolute path to a directory")
    if not isinstance(rstrip, bool):
        raise CommandError(f"cmd.run: rstrip must be true or false, not {kind(rstrip)}")
    return CmdRun(argv=argv, cwd=cwd, timeout_s=timeout_s, rstrip=rstrip)


@dataclass(frozen=True)
class Completed:
    """How a command ended: its pid, exit status and output (stderr empty when merged)."""

    pid: int
    retcode: int
    stdout: str
    stderr: str


async def run(job: CmdRun, output_limit_bytes: int, merge_stderr: bool = True) -> Completed:
    """Run `job` to its end; CommandTimeout once it outlives its timeout.

    `merge_stderr` (cmd.run) sends stderr into stdout, as salt's cmd.run does; otherwise
    (cmd.run_all) each is kept apart, each bounded by `output_limit_bytes`.
    """
    program = job.argv[0]
    cookie = secrets.token_hex(16)
    try:
        process = await asyncio.create_subprocess_exec(
            *job.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
            cwd=job.cwd,
            env={**child_environment(), COOKIE_VAR: cookie},
            start_new_session=True,
        )
    except FileNotFoundError:
        raise CommandError(f"Unable to run command {program!r}: program not found") from None
    except PermissionError:
        raise CommandError(f"Unable to run command {program!r}: permission denied") from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"Unable to run command {program!r}: {exc}") from None
    try:
        stdout, stderr = await asyncio.wait_for(
            _communicate(process, output_limit_bytes), job.timeout_s
        )
    except TimeoutError:
        _kill_group(process, cookie)
        await process.wait()
        log.warning("cmd.run %r timed out after %g s; its process group was killed",
                    program, job.timeout_s)  # fmt: skip
        raise CommandTimeout(
            f"Timed out after {job.timeout_s:g} seconds: {program!r} was stopped"
        ) from None
    except BaseException:
        # Cancelled (the caller went away): nothing the command started may outlive it.
        _kill_group(process, cookie)
        with contextlib.suppress(BaseException):
            await asyncio.shield(process.wait())
        raise
    assert process.returncode is not None
    return Completed(
        pid=process.pid,
        retcode=process.returncode,
        stdout=_text(stdout, job.rstrip),
        stderr=_text(stderr, job.rstrip),
    )


async def _communicate(
    process: asyncio.subprocess.Process, limit: int
) -> tuple[tuple[bytes, int], tuple[bytes, int]]:
    """Both outputs, once the program has closed them and exited."""
    outputs = await asyncio.gather(
        _read_all(process.stdout, limit), _read_all(process.stderr, limit)
    )
    await process.wait()
    return outputs[0], outputs[1]


async def _read_all(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, int]:
    """Read a stream to its end, keeping the first `limit` bytes; the rest is read and
    counted, so that a chatty program is not blocked on a full pipe. None: nothing."""
    kept = bytearray()
    dropped = 0
    if stream is None:
        return b"", 0
    while chunk := await stream.read(_READ_CHUNK):
        room = limit - len(kept)
        kept += chunk[:room]
        dropped += max(0, len(chunk) - room)
    return bytes(kept), dropped


def _text(output: tuple[bytes, int], rstrip: bool) -> str:
    """Bytes as text (undecodable bytes replaced), stripped as salt does, truncation noted."""
    kept, dropped = output
    text = kept.decode("utf-8", errors="replace")
    if rstrip:
        text = text.rstrip()
    if dropped:
        text += f"\n[output truncated: {dropped} more bytes were not kept]"
    return text


def _kill_group(process: asyncio.subprocess.Process, cookie: str) -> None:
    """SIGKILL the command's process group (it leads its own session), then every process
    whose environment still holds the command's cookie (one that left the group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in _carrying(f"{COOKIE_VAR}={cookie}".encode()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _carrying(entry: bytes) -> list[int]:
    """The processes whose environment holds ``entry`` (from /proc; empty where there is
    none). A process's environment is readable by its own user, the agent's."""
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            with contextlib.suppress(OSError), open(f"/proc/{name}/environ", "rb") as environ:
                if entry in environ.read().split(b"\0"):
                    found.append(int(name))
    return found


def _word(value: Any) -> str:
    """One argument of the command line: a string, or a number written as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise CommandError(f"cmd.run: arguments must be strings or numbers, not {kind(value)}")


def child_environment() -> dict[str, str]:
    """The agent's environment without its own settings: THINGWIRE_AGENT_LOCAL_PASSWORD
    and the rest are the agent's, never a command's to read (docs/device-commands.md)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("THINGWIRE_")}
