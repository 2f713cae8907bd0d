"""The one rule for `execute/` and `execute_raw/` bodies, on the device and in the relay."""

from __future__ import annotations

from typing import Any

import pytest

from device_agent.commands import CommandError
from device_agent.commands.bodies import parse_execute, parse_execute_raw


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"command": "cmd.run", "arg": ["ls", "-l"], "kwarg": {}}',
            ("cmd.run", ["ls", "-l"], {}),
        ),
        (b'{"command": "test.ping"}', ("test.ping", [], {})),
        (b'{"command": "test.ping", "arg": null, "kwarg": null}', ("test.ping", [], {})),
        (b'{"command": "grains.get", "arg": "foo"}', ("grains.get", ["foo"], {})),
        (b'["grains.get", "foo", {"a": 1}]', ("grains.get", ["foo", {"a": 1}], {})),
        (
            b'{"command": "grains.set", "arg": ["k", 1], "kwarg": {"force": true}}',
            ("grains.set", ["k", 1], {"force": True}),
        ),
    ],
)
def test_the_accepted_forms(body: bytes, expected: tuple[str, list[Any], dict[str, Any]]) -> None:
    assert parse_execute(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b"[1]",
        b"7",
        b'"test.ping"',
        b'{"command": NaN}',
        b"\xff",
        b'{"command": "x", "kwarg": []}',
        b'{"command": "x", "extra": 1}',
        b'{"command": " "}',
    ],
)
def test_everything_else_is_a_command_error(body: bytes) -> None:
    with pytest.raises(CommandError) as refused:
        parse_execute(body)
    assert refused.value.status == 400


def test_a_raw_body_is_one_command_line() -> None:
    assert parse_execute_raw(b'{"command": "cmd.run ls -l"}') == "cmd.run ls -l"
    for body in (b'{"command": "cmd.run", "arg": []}', b'["cmd.run"]', b'{"command": 1}', b"x"):
        with pytest.raises(CommandError):
            parse_execute_raw(body)
