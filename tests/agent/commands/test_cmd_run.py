"""cmd.run: argv without a shell, output as salt gives it, timeouts that kill everything,
and the disabled and restricted modes."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from device_agent.commands import Commands, CommandSettings, CommandTimeout
from device_agent.commands.errors import CommandError
from tests.agent.commands.conftest import execute, run


def _alive(pid: int) -> bool:
    """True while `pid` is a process that has not exited (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for_file(path: Path) -> None:
    while not path.exists() or not path.read_text().strip():
        time.sleep(0.02)


def test_list_argument_is_the_command_line(commands: Commands, tmp_path: Path) -> None:
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "b").write_text("")
    (listed / "a b").write_text("")
    assert execute(commands, "cmd.run", "ls", str(listed)) == "a b\nb"


def test_documented_ls_l_runs(commands: Commands) -> None:
    output = execute(commands, "cmd.run", "ls", "-l", "/")
    assert output.startswith("total ")


def test_one_string_is_split_like_a_shell_would(commands: Commands) -> None:
    assert execute(commands, "cmd.run", "printf '%s|' 'a b' c\\ d") == "a b|c d|"


def test_a_list_as_the_only_argument_or_cmd_kwarg(commands: Commands) -> None:
    assert execute(commands, "cmd.run", ["echo", "x y"]) == "x y"
    assert execute(commands, "cmd.run", cmd=["echo", "z"]) == "z"
    assert execute(commands, "cmd.run", cmd="echo w") == "w"


def test_shell_metacharacters_are_literal(commands: Commands, tmp_path: Path) -> None:
    marker = tmp_path / "created"
    text = f"$(id); rm -rf /; touch {marker} && `whoami` | cat > /dev/null"
    assert execute(commands, "cmd.run", "echo", text) == text
    assert execute(commands, "cmd.run", f"echo 'x' ; touch {marker}") == f"x ; touch {marker}"
    assert not marker.exists()


def test_stderr_is_merged_and_trailing_whitespace_stripped(commands: Commands) -> None:
    script = "import sys; print('out'); sys.stdout.flush(); print('err', file=sys.stderr)"
    output = execute(commands, "cmd.run", "python3", "-c", script + "; print('\\n\\n')")
    assert output == "out\nerr"


def test_rstrip_false_keeps_the_newline(commands: Commands) -> None:
    assert execute(commands, "cmd.run", "echo", "x", rstrip=False) == "x\n"


def test_nonzero_exit_still_answers_the_output(commands: Commands) -> None:
    assert execute(commands, "cmd.run", "sh", "-c", "echo failing; exit 3") == "failing"


def test_numbers_are_arguments_as_text(commands: Commands) -> None:
    assert execute(commands, "cmd.run", "echo", 5, 1.5) == "5 1.5"


def test_cwd(commands: Commands, tmp_path: Path) -> None:
    assert execute(commands, "cmd.run", "pwd", cwd=str(tmp_path)) == str(tmp_path)


@pytest.mark.parametrize("cwd", ["relative", "/no/such/dir", 5])
def test_bad_cwd(commands: Commands, cwd: object) -> None:
    with pytest.raises(CommandError, match="cwd"):
        execute(commands, "cmd.run", "pwd", cwd=cwd)


def test_missing_program_is_a_clear_error(commands: Commands) -> None:
    with pytest.raises(
        CommandError, match="Unable to run command 'no-such-program-x': program not found"
    ):
        execute(commands, "cmd.run", "no-such-program-x", "-l")


def test_not_executable_is_a_clear_error(commands: Commands, tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(CommandError, match="permission denied"):
        execute(commands, "cmd.run", str(script))


def test_timeout_kills_the_whole_process_group(commands: Commands, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 5 & echo $$ $! > {pids}; wait"
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=re.escape("Timed out after 0.5 seconds")) as caught:
        execute(commands, "cmd.run", "sh", "-c", script, timeout=0.5)
    assert time.monotonic() - started < 3
    assert caught.value.status == 504
    shell, sleeper = (int(pid) for pid in pids.read_text().split())
    deadline = time.monotonic() + 2
    while (_alive(shell) or _alive(sleeper)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(shell)
    assert not _alive(sleeper)


def test_default_timeout_comes_from_the_settings(state_dir: Path) -> None:
    commands = Commands(state_dir, CommandSettings(cmd_timeout_s=0.3))
    with pytest.raises(CommandTimeout, match=re.escape("0.3 seconds")):
        execute(commands, "cmd.run", "sleep", "5")


def test_output_after_the_program_closed_it_still_needs_the_program_to_exit(
    state_dir: Path,
) -> None:
    commands = Commands(state_dir, CommandSettings(cmd_timeout_s=0.3))
    with pytest.raises(CommandTimeout):
        execute(commands, "cmd.run", "sh", "-c", "exec >&- 2>&-; sleep 5")


@pytest.mark.parametrize("timeout", [0, -1, "5", True, 601, float("inf"), [1]])
def test_bad_timeout(commands: Commands, timeout: object) -> None:
    with pytest.raises(CommandError, match="timeout must be a number of seconds"):
        execute(commands, "cmd.run", "true", timeout=timeout)


def test_cancelling_the_request_kills_the_command(commands: Commands, tmp_path: Path) -> None:
    import asyncio

    pids = tmp_path / "pids"

    async def scenario() -> None:
        task = asyncio.create_task(
            commands.execute("cmd.run", ["sh", "-c", f"echo $$ > {pids}; sleep 5"], {})
        )
        await asyncio.wait_for(asyncio.to_thread(_wait_for_file, pids), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    pid = int(pids.read_text())
    deadline = time.monotonic() + 2
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)


def test_output_is_bounded(state_dir: Path) -> None:
    commands = Commands(state_dir, CommandSettings(cmd_output_limit_bytes=10))
    output = execute(commands, "cmd.run", "python3", "-c", "print('x' * 100000)")
    assert output == "x" * 10 + "\n[output truncated: 99991 more bytes were not kept]"


def test_python_shell_runs_a_shell_when_enabled(commands: Commands) -> None:
    assert execute(commands, "cmd.run", "echo a; echo $((1 + 2))", python_shell=True) == "a\n3"


def test_python_shell_must_be_a_bool(commands: Commands) -> None:
    with pytest.raises(CommandError, match="python_shell must be true or false"):
        execute(commands, "cmd.run", "echo a", python_shell="yes")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no command given"),
        ([""], "no command given"),
        (["echo 'open"], "cannot split the command line"),
        (["echo", {"a": 1}], "arguments must be strings or numbers, not an object"),
        (["echo", None], "not null"),
        (["echo", True], "not a boolean"),
        (["echo", "a\0b"], "Unable to run command"),
    ],
)
def test_bad_command_lines(commands: Commands, args: list[object], message: str) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        execute(commands, "cmd.run", *args)


def test_cmd_and_arguments_together_are_refused(commands: Commands) -> None:
    with pytest.raises(CommandError, match="not both"):
        execute(commands, "cmd.run", "ls", cmd="ls")


def test_unknown_keyword_is_refused(commands: Commands) -> None:
    with pytest.raises(CommandError, match="unexpected keyword argument 'runas'"):
        execute(commands, "cmd.run", "id", runas="root")


def test_disabled(state_dir: Path, tmp_path: Path) -> None:
    commands = Commands(state_dir, CommandSettings(cmd_run="disabled"))
    marker = tmp_path / "ran"
    with pytest.raises(CommandError, match=re.escape("cmd.run is disabled")) as caught:
        execute(commands, "cmd.run", "touch", str(marker))
    assert caught.value.status == 400
    assert not marker.exists()


def test_restricted_runs_only_allowed_programs(state_dir: Path) -> None:
    settings = CommandSettings(cmd_run="restricted", cmd_run_allowed=frozenset({"echo"}))
    commands = Commands(state_dir, settings)
    assert execute(commands, "cmd.run", "echo", "ok") == "ok"
    assert execute(commands, "cmd.run", "echo fine") == "fine"
    for argv in (["ls"], ["/bin/echo", "x"], ["./echo"], ["echo/../ls"], ["sh", "-c", "echo"]):
        with pytest.raises(CommandError, match="is not allowed; this device runs only echo"):
            execute(commands, "cmd.run", *argv)


def test_restricted_never_runs_a_shell(state_dir: Path) -> None:
    settings = CommandSettings(cmd_run="restricted", cmd_run_allowed=frozenset({"echo"}))
    commands = Commands(state_dir, settings)
    with pytest.raises(CommandError, match="python_shell is not allowed"):
        execute(commands, "cmd.run", "echo x; id", python_shell=True)
    assert execute(commands, "cmd.run", "echo x; id") == "x; id"


def test_disabled_refuses_python_shell_too(state_dir: Path) -> None:
    commands = Commands(state_dir, CommandSettings(cmd_run="disabled"))
    with pytest.raises(CommandError, match="disabled"):
        execute(commands, "cmd.run", "echo x", python_shell=True)


def test_environment_of_the_agent_is_inherited(
    commands: Commands, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVICE_TEST_MARKER", "seen")
    assert execute(commands, "cmd.run", "printenv", "DEVICE_TEST_MARKER") == "seen"


def test_the_agents_own_settings_are_not_handed_to_commands(
    commands: Commands, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THINGWIRE_AGENT_LOCAL_PASSWORD", "secret-1")
    assert "secret-1" not in execute(commands, "cmd.run", "env")


def test_run_all_keeps_stdout_and_stderr_apart(commands: Commands) -> None:
    script = "echo out; echo err >&2; exit 3"
    result = execute(commands, "cmd.run_all", "sh", "-c", script)
    assert set(result) == {"pid", "retcode", "stdout", "stderr"}
    assert result["retcode"] == 3
    assert result["stdout"] == "out"
    assert result["stderr"] == "err"
    assert isinstance(result["pid"], int)


def test_run_all_redirect_stderr(commands: Commands) -> None:
    script = "echo out; echo err >&2"
    result = execute(commands, "cmd.run_all", "sh", "-c", script, redirect_stderr=True)
    assert result["stdout"] == "out\nerr"
    assert result["stderr"] == ""


def test_run_all_times_out_too(commands: Commands) -> None:
    with pytest.raises(CommandTimeout):
        execute(commands, "cmd.run_all", "sleep", "5", timeout=0.2)


def test_retcode(commands: Commands) -> None:
    assert execute(commands, "cmd.retcode", "true") == 0
    assert execute(commands, "cmd.retcode", "sh -c 'exit 7'") == 7


def test_run_all_and_retcode_follow_the_modes(state_dir: Path) -> None:
    commands = Commands(state_dir, CommandSettings(cmd_run="disabled"))
    for command in ("cmd.run_all", "cmd.retcode"):
        with pytest.raises(CommandError, match="disabled"):
            execute(commands, command, "true")
    settings = CommandSettings(cmd_run="restricted", cmd_run_allowed=frozenset({"true"}))
    commands = Commands(state_dir, settings)
    assert execute(commands, "cmd.retcode", "true") == 0
    with pytest.raises(CommandError, match="is not allowed"):
        execute(commands, "cmd.run_all", "id")
