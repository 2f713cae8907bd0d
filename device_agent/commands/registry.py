"""`Commands`: the registry of salt-style commands the device runs, behind the Local API's
`execute/` and `execute_raw/` and the cloud's relay of both (docs/device-commands.md).

A command is looked up by salt's name (`grains.get`), its arguments are bound to the
function's signature the way salt binds them (positional `arg`, keyword `kwarg`), and the
result is returned as JSON-ready values in salt's shapes. Anything wrong with the request is
a `CommandError`; see `device_agent.commands.errors` for the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from device_agent.commands import cmdrun, grains
from device_agent.commands.apn import ApnSettings
from device_agent.commands.errors import CommandError
from device_agent.commands.raw import split_raw
from device_agent.commands.settings import CommandSettings, StatePaths
from device_agent.commands.states import States, parse_mods
from device_agent.commands.values import kind

__all__ = ["Commands"]

log = logging.getLogger("device_agent.commands")

Function = Callable[..., Awaitable[Any]]


class Commands:
    """Runs salt-style commands on this device (implements `CommandRunner`).

    `state_dir` is the agent's state directory (THINGWIRE_AGENT_STATE_DIR): grains, APN
    settings and rendered files live under it. `settings` defaults to `CommandSettings()`
    (cmd.run enabled, 30 s timeout, Wi-Fi country US); `apn` defaults to the APN settings
    under `state_dir` — pass the LocalService's own instance so both share one lock.
    """

    def __init__(
        self,
        state_dir: Path,
        settings: CommandSettings | None = None,
        apn: ApnSettings | None = None,
    ) -> None:
        self.paths = StatePaths(Path(state_dir))
        self.settings = settings if settings is not None else CommandSettings()
        self.apn = apn if apn is not None else ApnSettings(self.paths.state_dir)
        self.grains = grains.GrainStore(self.paths.state_dir)
        self._states = States(self.paths, self.settings, self.grains, self.apn)
        self._functions: dict[str, Function] = {
            "cmd.retcode": self._cmd_retcode,
            "cmd.run": self._cmd_run,
            "cmd.run_all": self._cmd_run_all,
            "grains.delkey": self._grains_delkey,
            "grains.delval": self._grains_delval,
            "grains.get": self._grains_get,
            "grains.item": self._grains_item,
            "grains.items": self._grains_items,
            "grains.ls": self._grains_ls,
            "grains.set": self._grains_set,
            "grains.setval": self._grains_setval,
            "state.apply": self._state_apply,
            "state.sls": self._state_sls,
            "sys.list_functions": self._sys_list_functions,
            "test.echo": self._test_echo,
            "test.ping": self._test_ping,
        }

    def register(self, name: str, function: Function) -> None:
        """Add a command from another part of the agent (the vehicle's `obd.query`), bound
        like the others; ValueError for a name already taken."""
        if name in self._functions:
            raise ValueError(f"the command {name!r} exists already")
        self._functions[name] = function

    @property
    def functions(self) -> list[str]:
        """Every command this registry runs, by salt's name."""
        return sorted(self._functions)

    async def execute(
        self, command: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
    ) -> Any:
        """Run `command` with salt's positional `args` and keyword `kwargs` (None: none).

        An argument that is an object with ``"__kwarg__": true`` holds keyword arguments, as
        in salt's argument lists. Raises CommandError for an unknown command ("'foo.bar' is
        not available", salt's wording) or arguments the command does not take.
        """
        if not isinstance(command, str):
            raise CommandError(f"the command must be a string, not {kind(command)}")
        function = self._functions.get(command)
        if function is None:
            raise CommandError(f"'{command}' is not available.")
        positional, keywords = _arguments(command, args, kwargs)
        try:
            bound = inspect.signature(function).bind(*positional, **keywords)
        except TypeError as exc:
            raise CommandError(f"Passed invalid arguments to {command}: {exc}") from None
        started = time.monotonic()
        try:
            result = await function(*bound.args, **bound.kwargs)
        except CommandError as exc:
            log.info("%s failed (%s): %s", command, type(exc).__name__, exc)
            raise
        log.info("%s done in %.3f s", command, time.monotonic() - started)
        return result

    async def execute_raw(self, line: str) -> Any:
        """Run one command line: ``"cmd.run ls -l"``, ``"grains.get wpa_supplicant:networks"``.

        For `cmd.run` the rest of the line is the command line; for other commands it is
        split shell-style into arguments, ``key=value`` words being keyword arguments
        (device_agent.commands.raw).
        """
        command, args, kwargs = split_raw(line, raw_line_commands=RAW_LINE_COMMANDS)
        return await self.execute(command, args, kwargs)

    # cmd

    async def _cmd_run(
        self,
        *args: Any,
        cmd: Any = None,
        cwd: Any = None,
        timeout: Any = None,  # noqa: ASYNC109 - salt's kwarg name; cmdrun enforces it
        python_shell: Any = False,
        rstrip: Any = True,
    ) -> str:
        """salt's cmd.run: the output, stderr merged into stdout."""
        job = cmdrun.plan(
            self.settings, args, cmd=cmd, cwd=cwd, timeout=timeout,
            python_shell=python_shell, rstrip=rstrip,
        )  # fmt: skip
        log.info("cmd.run %s (timeout %g s)", job.argv[0], job.timeout_s)
        completed = await cmdrun.run(job, self.settings.cmd_output_limit_bytes)
        return completed.stdout

    async def _cmd_run_all(
        self,
        *args: Any,
        cmd: Any = None,
        cwd: Any = None,
        timeout: Any = None,  # noqa: ASYNC109 - salt's kwarg name; cmdrun enforces it
        python_shell: Any = False,
        rstrip: Any = True,
        redirect_stderr: Any = False,
    ) -> dict[str, Any]:
        """salt's cmd.run_all: ``{"pid", "retcode", "stdout", "stderr"}``."""
        if not isinstance(redirect_stderr, bool):
            raise CommandError(
                f"cmd.run_all: redirect_stderr must be true or false, not {kind(redirect_stderr)}"
            )
        job = cmdrun.plan(
            self.settings, args, cmd=cmd, cwd=cwd, timeout=timeout,
            python_shell=python_shell, rstrip=rstrip,
        )  # fmt: skip
        log.info("cmd.run_all %s (timeout %g s)", job.argv[0], job.timeout_s)
        completed = await cmdrun.run(
            job, self.settings.cmd_output_limit_bytes, merge_stderr=redirect_stderr
        )
        return {
            "pid": completed.pid,
            "retcode": completed.retcode,
            "stdout": completed.stdout,
            "stderr": completed.stderr,
        }

    async def _cmd_retcode(
        self,
        *args: Any,
        cmd: Any = None,
        cwd: Any = None,
        timeout: Any = None,  # noqa: ASYNC109 - salt's kwarg name; cmdrun enforces it
        python_shell: Any = False,
    ) -> int:
        """salt's cmd.retcode: the exit status only."""
        job = cmdrun.plan(
            self.settings, args, cmd=cmd, cwd=cwd, timeout=timeout, python_shell=python_shell
        )
        log.info("cmd.retcode %s (timeout %g s)", job.argv[0], job.timeout_s)
        completed = await cmdrun.run(job, self.settings.cmd_output_limit_bytes)
        return completed.retcode

    # grains

    async def _grains_get(
        self, key: Any, default: Any = "", delimiter: Any = ":", ordered: Any = True
    ) -> Any:
        grains.check_key("grains.get", key, delimiter)
        snapshot = await asyncio.to_thread(self.grains.read)
        return grains.get(snapshot, key, default, delimiter)

    async def _grains_item(self, *keys: Any, default: Any = "", delimiter: Any = ":") -> Any:
        for key in keys:
            grains.check_key("grains.item", key, delimiter)
        snapshot = await asyncio.to_thread(self.grains.read)
        return {key: grains.get(snapshot, key, default, delimiter) for key in keys}

    async def _grains_items(self) -> Any:
        return await asyncio.to_thread(self.grains.read)

    async def _grains_ls(self) -> Any:
        return sorted(await asyncio.to_thread(self.grains.read))

    async def _grains_set(
        self,
        key: Any,
        val: Any = "",
        force: Any = False,
        destructive: Any = False,
        delimiter: Any = ":",
    ) -> Any:
        grains.check_key("grains.set", key, delimiter)
        _check_flags("grains.set", force=force, destructive=destructive)
        return await asyncio.to_thread(
            self.grains.update,
            lambda current: grains.set_grain(
                current, key, val, force=force, destructive=destructive, delimiter=delimiter
            ),
        )

    async def _grains_setval(self, key: Any, val: Any, destructive: Any = False) -> Any:
        grains.check_key("grains.setval", key)
        _check_flags("grains.setval", destructive=destructive)
        return await asyncio.to_thread(
            self.grains.update,
            lambda current: (grains.setval(current, key, val, destructive=destructive), True),
        )

    async def _grains_delkey(self, key: Any, force: Any = False) -> Any:
        grains.check_key("grains.delkey", key)
        _check_flags("grains.delkey", force=force)
        return await asyncio.to_thread(
            self.grains.update, lambda current: grains.delkey(current, key, force=force)
        )

    async def _grains_delval(self, key: Any, destructive: Any = False, force: Any = False) -> Any:
        grains.check_key("grains.delval", key)
        _check_flags("grains.delval", destructive=destructive, force=force)
        return await asyncio.to_thread(
            self.grains.update,
            lambda current: grains.set_grain(
                current, key, None, force=force, destructive=destructive
            ),
        )

    # state

    async def _state_sls(self, mods: Any, test: Any = None) -> Any:
        if test is not None and not isinstance(test, bool):
            raise CommandError(f"state.sls: test must be true or false, not {kind(test)}")
        names = parse_mods(mods)
        return await asyncio.to_thread(self._states.apply, names, bool(test))

    async def _state_apply(self, mods: Any = None, test: Any = None) -> Any:
        if mods is None:
            raise CommandError("state.apply: a highstate is not available; name the sls")
        return await self._state_sls(mods, test)

    # test, sys

    async def _test_ping(self) -> bool:
        return True

    async def _test_echo(self, text: Any) -> Any:
        return text

    async def _sys_list_functions(self) -> list[str]:
        return self.functions


#: Commands whose raw form takes the rest of the line as one command line.
RAW_LINE_COMMANDS = frozenset({"cmd.retcode", "cmd.run", "cmd.run_all"})


def _arguments(
    command: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
) -> tuple[list[Any], dict[str, Any]]:
    """salt's positional and keyword arguments, checked for shape."""
    if args is None:
        args = []
    if kwargs is None:
        kwargs = {}
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise CommandError(f"{command}: 'arg' must be a list, not {kind(args)}")
    if not isinstance(kwargs, Mapping):
        raise CommandError(f"{command}: 'kwarg' must be an object, not {kind(kwargs)}")
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for arg in args:
        if isinstance(arg, dict) and arg.get("__kwarg__") is True:
            keywords.update({k: v for k, v in arg.items() if k != "__kwarg__"})
        else:
            positional.append(arg)
    keywords.update(kwargs)
    bad = [key for key in keywords if not isinstance(key, str) or not key.isidentifier()]
    if bad:
        raise CommandError(f"{command}: not a keyword argument name: {bad[0]!r}")
    return positional, keywords


def _check_flags(command: str, **flags: Any) -> None:
    """salt's force/destructive are booleans; anything else is refused, not coerced."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise CommandError(f"{command}: {name} must be true or false, not {kind(value)}")
