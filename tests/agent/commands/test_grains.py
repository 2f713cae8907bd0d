"""grains.*: salt's nesting, force and destructive, and a file that survives restarts."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from device_agent.commands import Commands, CommandSettings, CommandUnavailable
from device_agent.commands.errors import CommandError
from tests.agent.commands.conftest import execute

NETWORKS = [
    {"ssid": "Network-1", "psk": "password1", "priority": 2},
    {"ssid": "Network-2", "psk": "password2", "priority": 1},
]


def test_the_documented_wifi_grains_set(commands: Commands) -> None:
    result = execute(
        commands, "grains.set", "wpa_supplicant:networks", NETWORKS, destructive=True, force=True
    )
    assert result == {
        "changes": {"wpa_supplicant": {"networks": NETWORKS}},
        "comment": "",
        "result": True,
    }
    assert execute(commands, "grains.get", "wpa_supplicant:networks") == NETWORKS
    assert execute(commands, "grains.get", "wpa_supplicant:networks:0:ssid") == "Network-1"
    assert execute(commands, "grains.get", "wpa_supplicant:networks:ssid") == "Network-1"


def test_grains_persist_across_a_new_instance(commands: Commands, state_dir: Path) -> None:
    execute(commands, "grains.set", "a:b:c", 1)
    again = Commands(state_dir, CommandSettings())
    assert execute(again, "grains.items") == {"a": {"b": {"c": 1}}}
    assert json.loads((state_dir / "grains.json").read_text()) == {"a": {"b": {"c": 1}}}
    assert os.listdir(state_dir) == ["grains.json"]


def test_get_default_positional_and_keyword(commands: Commands) -> None:
    assert execute(commands, "grains.get", "missing") == ""
    assert execute(commands, "grains.get", "missing", "fallback") == "fallback"
    assert execute(commands, "grains.get", "missing", default={"x": 1}) == {"x": 1}
    execute(commands, "grains.set", "scalar", "text")
    assert execute(commands, "grains.get", "scalar:deeper", default=None) is None


def test_get_with_another_delimiter(commands: Commands) -> None:
    execute(commands, "grains.set", "a:b", 5)
    assert execute(commands, "grains.get", "a.b", delimiter=".") == 5
    assert execute(commands, "grains.get", "a.b") == ""  # ':' is the default


def test_get_list_index_out_of_range(commands: Commands) -> None:
    execute(commands, "grains.setval", "l", [1, 2])
    assert execute(commands, "grains.get", "l:1") == 2
    assert execute(commands, "grains.get", "l:2", default="none") == "none"


def test_set_same_value_is_already_set(commands: Commands) -> None:
    execute(commands, "grains.set", "role", "web")
    result = execute(commands, "grains.set", "role", "web")
    assert result == {"changes": {}, "comment": "Grain is already set", "result": True}


def test_set_overwrites_a_simple_value(commands: Commands) -> None:
    execute(commands, "grains.set", "role", "web")
    result = execute(commands, "grains.set", "role", "db")
    assert result["changes"] == {"role": "db"}
    assert execute(commands, "grains.get", "role") == "db"


def test_set_without_force_keeps_a_list(commands: Commands) -> None:
    execute(commands, "grains.set", "wpa_supplicant:networks", NETWORKS)
    result = execute(commands, "grains.set", "wpa_supplicant:networks", [{"ssid": "x"}])
    assert result["result"] is False
    assert "exists but is a dict or a list. Use 'force=True'" in result["comment"]
    assert result["changes"] == {}
    assert execute(commands, "grains.get", "wpa_supplicant:networks") == NETWORKS


def test_set_without_force_will_not_put_a_list_over_a_value(commands: Commands) -> None:
    execute(commands, "grains.set", "role", "web")
    result = execute(commands, "grains.set", "role", ["web", "db"])
    assert result["result"] is False
    assert "the given value is a dict or a list" in result["comment"]
    assert execute(commands, "grains.set", "role", ["web", "db"], force=True)["result"] is True
    assert execute(commands, "grains.get", "role") == ["web", "db"]


def test_force_replaces_a_list(commands: Commands) -> None:
    execute(commands, "grains.set", "wpa_supplicant:networks", NETWORKS)
    new = [{"ssid": "x"}]
    result = execute(commands, "grains.set", "wpa_supplicant:networks", new, force=True)
    assert result == {
        "changes": {"wpa_supplicant": {"networks": new}},
        "comment": "",
        "result": True,
    }


def test_nested_set_keeps_siblings(commands: Commands) -> None:
    execute(commands, "grains.set", "apps:one:port", 1)
    execute(commands, "grains.set", "apps:two:port", 2)
    assert execute(commands, "grains.get", "apps") == {"one": {"port": 1}, "two": {"port": 2}}


def test_nested_set_under_a_scalar_needs_force(commands: Commands) -> None:
    execute(commands, "grains.set", "a", "text")
    result = execute(commands, "grains.set", "a:b", 1)
    assert result["result"] is False
    assert "which is different from the provided key 'b'" in result["comment"]
    assert execute(commands, "grains.get", "a") == "text"
    assert execute(commands, "grains.set", "a:b", 1, force=True)["changes"] == {"a": {"b": 1}}


def test_none_without_destructive_keeps_the_key(commands: Commands) -> None:
    execute(commands, "grains.set", "a:b", 1)
    result = execute(commands, "grains.set", "a:b", None)
    assert result["changes"] == {"a": {"b": None}}
    assert execute(commands, "grains.items") == {"a": {"b": None}}


def test_none_with_destructive_removes_the_key(commands: Commands) -> None:
    execute(commands, "grains.set", "a:b", 1)
    execute(commands, "grains.set", "a:c", 2)
    result = execute(commands, "grains.set", "a:b", None, destructive=True)
    assert result["changes"] == {"a": {"c": 2}}
    assert execute(commands, "grains.items") == {"a": {"c": 2}}
    execute(commands, "grains.set", "top", 1)
    assert execute(commands, "grains.set", "top", None, destructive=True)["result"] is True
    assert "top" not in execute(commands, "grains.items")


def test_delkey(commands: Commands) -> None:
    execute(commands, "grains.set", "a", "x")
    assert execute(commands, "grains.delkey", "a") == {
        "changes": {"a": None},
        "comment": "",
        "result": True,
    }
    assert execute(commands, "grains.items") == {}


def test_delkey_of_a_list_needs_force(commands: Commands) -> None:
    execute(commands, "grains.set", "l", [1])
    assert execute(commands, "grains.delkey", "l")["result"] is False
    assert execute(commands, "grains.get", "l") == [1]
    assert execute(commands, "grains.delkey", "l", force=True)["result"] is True
    assert execute(commands, "grains.items") == {}


def test_delkey_of_a_missing_key_changes_nothing(commands: Commands) -> None:
    result = execute(commands, "grains.delkey", "a:b")
    assert result == {"changes": {}, "comment": "Grain 'a:b' is not set", "result": True}
    assert execute(commands, "grains.items") == {}


def test_delval_keeps_the_key(commands: Commands) -> None:
    execute(commands, "grains.set", "a", "x")
    execute(commands, "grains.delval", "a")
    assert execute(commands, "grains.items") == {"a": None}


def test_setval_is_top_level_only(commands: Commands) -> None:
    assert execute(commands, "grains.setval", "a:b", {"x": 1}) == {"a:b": {"x": 1}}
    assert execute(commands, "grains.items") == {"a:b": {"x": 1}}


def test_ls_and_item(commands: Commands) -> None:
    execute(commands, "grains.set", "b", 1)
    execute(commands, "grains.set", "a:x", 2)
    assert execute(commands, "grains.ls") == ["a", "b"]
    assert execute(commands, "grains.item", "a:x", "b", "c") == {"a:x": 2, "b": 1, "c": ""}


def test_nested_set_through_a_list(commands: Commands) -> None:
    execute(commands, "grains.setval", "l", [{"k": 1}, "other"])
    execute(commands, "grains.set", "l:k", 5)
    assert execute(commands, "grains.get", "l") == [{"k": 5}, "other"]
    execute(commands, "grains.set", "l:new", 6)
    assert execute(commands, "grains.get", "l") == [{"k": 5}, "other", {"new": 6}]


@pytest.mark.parametrize(
    ("command", "args", "kwargs", "message"),
    [
        ("grains.set", ["k", 1], {"force": "yes"}, "force must be true or false"),
        ("grains.set", ["k", 1], {"destructive": 1}, "destructive must be true or false"),
        ("grains.set", [5, 1], {}, "the key must be a non-empty string"),
        ("grains.set", ["", 1], {}, "the key must be a non-empty string"),
        ("grains.get", ["k"], {"delimiter": ""}, "delimiter must be a non-empty string"),
        ("grains.get", [], {}, "Passed invalid arguments to grains.get: missing a required"),
        ("grains.get", ["k"], {"bogus": 1}, "unexpected keyword argument 'bogus'"),
        ("grains.delkey", ["k"], {"destructive": True}, "unexpected keyword argument"),
        ("grains.items", ["extra"], {}, "too many positional arguments"),
    ],
)
def test_bad_arguments(
    commands: Commands, command: str, args: list[object], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(CommandError, match=re.escape(message)) as caught:
        execute(commands, command, *args, **kwargs)
    assert caught.value.status == 400
    assert execute(commands, "grains.items") == {}


def test_corrupt_grains_file_is_reported_never_replaced(
    commands: Commands, state_dir: Path
) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "grains.json").write_text('{"wpa_supplicant": ')
    calls: list[tuple[str, list[object]]] = [
        ("grains.items", []),
        ("grains.get", ["a"]),
        ("grains.set", ["a", 1]),
    ]
    for command, args in calls:
        with pytest.raises(
            CommandUnavailable, match=re.escape("grains.json is not valid JSON")
        ) as caught:
            execute(commands, command, *args)
        assert caught.value.status == 503
    assert (state_dir / "grains.json").read_text() == '{"wpa_supplicant": '


def test_grains_file_that_is_not_an_object_is_reported(commands: Commands, state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "grains.json").write_text("[1, 2]")
    with pytest.raises(CommandUnavailable, match="does not hold a JSON object"):
        execute(commands, "grains.items")
