"""APN settings: exactly five keys, validated types and ranges, persisted atomically."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from device_agent.commands import ApnSettings, CommandError, CommandUnavailable

DOCUMENTED = {"apn": "internet", "user": "user", "pass": "pass", "pin": "0000", "mtu": 1280}


def test_defaults_before_any_put(state_dir: Path) -> None:
    assert ApnSettings(state_dir).get() == {
        "apn": "",
        "user": "",
        "pass": "",
        "pin": "",
        "mtu": 1500,
    }


def test_put_returns_and_persists_the_documented_body(state_dir: Path) -> None:
    assert ApnSettings(state_dir).put(dict(DOCUMENTED)) == DOCUMENTED
    assert ApnSettings(state_dir).get() == DOCUMENTED  # a new instance: a restart


def test_file_is_owner_only_and_nothing_else_is_left(state_dir: Path) -> None:
    apn = ApnSettings(state_dir)
    apn.put(DOCUMENTED)
    apn.put({**DOCUMENTED, "apn": "web"})
    assert stat.S_IMODE(apn.path.stat().st_mode) == 0o600
    assert os.listdir(apn.path.parent) == ["apn.json"]


def test_put_replaces_missing_keys_take_defaults(state_dir: Path) -> None:
    apn = ApnSettings(state_dir)
    apn.put(DOCUMENTED)
    assert apn.put({"apn": "web"}) == {"apn": "web", "user": "", "pass": "", "pin": "", "mtu": 1500}


def test_whole_valued_float_mtu_is_an_integer(state_dir: Path) -> None:
    stored = ApnSettings(state_dir).put({"mtu": 1280.0})
    assert stored["mtu"] == 1280
    assert type(stored["mtu"]) is int


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**DOCUMENTED, "extra": 1}, "unknown APN setting 'extra'"),
        ({"APN": "x"}, "unknown APN setting 'APN'"),
        ([DOCUMENTED], "must be a JSON object, not an array"),
        ("internet", "must be a JSON object, not a string"),
        (None, "must be a JSON object, not null"),
        ({"apn": 5}, "'apn' must be a string, not a number"),
        ({"user": None}, "'user' must be a string, not null"),
        ({"pass": ["x"]}, "'pass' must be a string, not an array"),
        ({"pin": 1234}, "'pin' must be a string"),
        ({"mtu": True}, "'mtu' must be an integer, not a boolean"),
        ({"mtu": "1280"}, "'mtu' must be an integer, not a string"),
        ({"mtu": 1280.5}, "'mtu' must be an integer"),
        ({"mtu": 575}, "between 576 and 9000"),
        ({"mtu": 9001}, "between 576 and 9000"),
        ({"pin": "12"}, "'pin' must be empty or 4 to 8 digits"),
        ({"pin": "12ab"}, "'pin' must be empty or 4 to 8 digits"),
        ({"apn": "inter net"}, "'apn' must be at most 100"),
        ({"apn": "a'; reboot; '"}, "'apn' must be at most 100"),
        ({"pass": "a\nAPN=evil"}, "'pass' must not contain control characters"),
        ({"user": "x" * 256}, "'user' is longer than 255"),
    ],
)
def test_bad_bodies_are_refused_and_nothing_is_stored(
    state_dir: Path, body: Any, message: str
) -> None:
    apn = ApnSettings(state_dir)
    apn.put(DOCUMENTED)
    with pytest.raises(CommandError, match=re.escape(message)) as caught:
        apn.put(body)
    assert caught.value.status == 400
    assert apn.get() == DOCUMENTED


def test_corrupt_file_is_reported_and_kept(state_dir: Path) -> None:
    apn = ApnSettings(state_dir)
    apn.path.parent.mkdir(parents=True)
    apn.path.write_text("{not json")
    with pytest.raises(CommandUnavailable, match=re.escape("apn.json is not valid JSON")):
        apn.get()
    with pytest.raises(CommandUnavailable):
        apn.put(DOCUMENTED)
    assert apn.path.read_text() == "{not json"


def test_stored_file_with_bad_values_is_reported(state_dir: Path) -> None:
    apn = ApnSettings(state_dir)
    apn.path.parent.mkdir(parents=True)
    apn.path.write_text('{"mtu": "big"}')
    with pytest.raises(CommandUnavailable, match="invalid"):
        apn.get()
