"""The registry's faces: execute with salt's arguments, execute_raw's command lines, and
the errors for what it does not run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from device_agent.commands import CommandError, CommandRunner, Commands, CommandSettings
from device_agent.commands.raw import parse_value, split_raw
from tests.agent.commands.conftest import execute, run


def test_commands_is_a_command_runner(commands: Commands) -> None:
    runner: CommandRunner = commands
    assert run(runner.execute("test.ping", [], {})) is True


def test_ping_and_echo(commands: Commands) -> None:
    assert execute(commands, "test.ping") is True
    assert execute(commands, "test.echo", "hi") == "hi"


def test_missing_arg_and_kwarg_are_none(commands: Commands) -> None:
    assert run(commands.execute("test.ping", None, None)) is True


@pytest.mark.parametrize("command", ["foo.bar", "grains", "cmd.shell", "", "__import__"])
def test_unknown_command_in_salt_words(commands: Commands, command: str) -> None:
    with pytest.raises(
        CommandError, match=f"^{re.escape(repr(command))} is not available\\.$"
    ) as caught:
        execute(commands, command)
    assert caught.value.status == 400


def test_command_must_be_a_string(commands: Commands) -> None:
    with pytest.raises(CommandError, match="must be a string"):
        run(commands.execute(5, [], {}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ("ls -l", {}, "'arg' must be a list, not a string"),
        ({"a": 1}, {}, "'arg' must be a list, not an object"),
        ([], ["x"], "'kwarg' must be an object, not an array"),
        ([], {"not-an-identifier": 1}, "not a keyword argument name"),
    ],
)
def test_argument_shapes(commands: Commands, args: Any, kwargs: Any, message: str) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        run(commands.execute("test.ping", args, kwargs))


def test_salt_kwarg_marker_in_the_argument_list(commands: Commands) -> None:
    args = ["k", [1], {"__kwarg__": True, "force": True}]
    assert run(commands.execute("grains.set", args, {}))["result"] is True
    args = ["k", [2], {"__kwarg__": True, "force": True}]
    assert run(commands.execute("grains.set", args, {}))["changes"] == {"k": [2]}


def test_list_functions(commands: Commands) -> None:
    functions = execute(commands, "sys.list_functions")
    assert "cmd.run" in functions
    assert "grains.set" in functions
    assert functions == sorted(functions)


def test_raw_cmd_run_takes_the_rest_of_the_line(commands: Commands, tmp_path: Path) -> None:
    (tmp_path / "x y").write_text("")
    assert run(commands.execute_raw(f"cmd.run ls '{tmp_path}'")) == "x y"
    line = "cmd.run echo '$(id); rm -rf /' timeout=5"
    assert run(commands.execute_raw(line)) == "$(id); rm -rf / timeout=5"
    assert run(commands.execute_raw("  cmd.run   ls -l /  ")).startswith("total ")


def test_raw_cmd_run_without_command(commands: Commands) -> None:
    with pytest.raises(CommandError, match="no command given"):
        run(commands.execute_raw("cmd.run"))


def test_raw_grains_with_json_values_and_keywords(commands: Commands) -> None:
    networks = '[{"ssid": "Network-1", "psk": "password1", "priority": 2}]'
    line = f"grains.set wpa_supplicant:networks '{networks}' force=True destructive=true"
    result = run(commands.execute_raw(line))
    assert result["changes"] == {
        "wpa_supplicant": {"networks": [{"ssid": "Network-1", "psk": "password1", "priority": 2}]}
    }
    assert run(commands.execute_raw("grains.get wpa_supplicant:networks:0:priority")) == 2
    assert run(commands.execute_raw("grains.get nothing default=7")) == 7


def test_raw_state_sls(commands: Commands) -> None:
    answer = run(commands.execute_raw("state.sls network.wlan.client.config"))
    (state,) = answer.values()
    assert state["result"] is True


def test_raw_unknown_command(commands: Commands) -> None:
    with pytest.raises(CommandError, match=re.escape("'foo.bar' is not available.")):
        run(commands.execute_raw("foo.bar baz"))


@pytest.mark.parametrize("line", ["", "   ", "\n"])
def test_raw_empty(commands: Commands, line: str) -> None:
    with pytest.raises(CommandError, match="the command is empty"):
        run(commands.execute_raw(line))


def test_raw_must_be_a_string(commands: Commands) -> None:
    with pytest.raises(CommandError, match="must be a string, not an array"):
        run(commands.execute_raw(["cmd.run", "ls"]))  # type: ignore[arg-type]


def test_raw_unbalanced_quotes(commands: Commands) -> None:
    with pytest.raises(CommandError, match="cannot split the command line"):
        run(commands.execute_raw("grains.get 'open"))


def test_raw_disabled_cmd_run(state_dir: Path) -> None:
    commands = Commands(state_dir, CommandSettings(cmd_run="disabled"))
    with pytest.raises(CommandError, match="disabled"):
        run(commands.execute_raw("cmd.run ls -l"))


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("5", 5),
        ("1.5", 1.5),
        ("true", True),
        ("True", True),
        ("False", False),
        ("None", None),
        ("~", None),
        ("null", None),
        ('"quoted"', "quoted"),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("yes", "yes"),
        ("007", "007"),
        ("a:b", "a:b"),
        ("", ""),
    ],
)
def test_parse_value(word: str, value: Any) -> None:
    assert parse_value(word) == value
    assert type(parse_value(word)) is type(value)


def test_split_raw_keywords_and_positionals() -> None:
    assert split_raw("grains.get a:b default='x y' delimiter=: =x 1=2 a=b=c") == (
        "grains.get",
        ["a:b", "=x", "1=2"],
        {"default": "x y", "delimiter": ":", "a": "b=c"},
    )


def test_raw_run_all_takes_the_rest_of_the_line(commands: Commands) -> None:
    result = run(commands.execute_raw("cmd.run_all sh -c 'exit 4'"))
    assert result["retcode"] == 4
