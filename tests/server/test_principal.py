"""Scoped user tokens: which grants admit which actions."""

from __future__ import annotations

import pytest

from server.auth.authenticator import split_authorization, stored_permissions
from server.auth.permissions import FULL_ACCESS, NULL, parse_permissions, permissions_json
from server.auth.principal import Action, Permission, UserPrincipal
from server.errors import InvalidArgument, Unauthenticated


def test_unscoped_credentials_may_do_anything() -> None:
    assert UserPrincipal(1, "ada").allows(Action.WRITE, "any", "thing")


def test_a_grant_limits_device_resource_and_action() -> None:
    grant = Permission(
        device="door", resources=frozenset({"open"}), actions=frozenset({Action.CALL})
    )
    principal = UserPrincipal(1, "ada", permissions=(grant,))
    assert principal.allows(Action.CALL, "door", "open")
    assert not principal.allows(Action.CALL, "door", "close")
    assert not principal.allows(Action.CALL, "garage", "open")
    assert not principal.allows(Action.READ, "door")


def test_wildcard_device_and_default_actions() -> None:
    permissions = parse_permissions([{"device": "*"}])
    assert permissions is not None
    principal = UserPrincipal(1, "ada", permissions=permissions)
    assert principal.allows(Action.READ, "anything")
    assert principal.allows(Action.CALL, "anything", "relay")
    assert not principal.allows(Action.WRITE, "anything")


def test_only_permissions_left_out_mean_full_access() -> None:
    """Full access is asked for by sending none; an empty list (what a dropped null once
    became) is refused, and only storage's own canonical form reads back as full access."""
    assert parse_permissions(None) is FULL_ACCESS
    with pytest.raises(InvalidArgument, match="at least one permission"):
        parse_permissions([])
    with pytest.raises(InvalidArgument, match="must be a list"):
        parse_permissions(NULL)
    assert stored_permissions([], "t1") is FULL_ACCESS
    assert stored_permissions(permissions_json(None), "t1") is FULL_ACCESS


@pytest.mark.parametrize(
    "stored",
    [
        [{"device": "door", "actions": "call"}],  # once turned every call into INTERNAL
        [{"device": "door", "actions": ["fly"]}],
        [{"device": None}],  # once read as every device
        [{"device": "door", "resources": None}],
        [None],
        None,
        [{"device": "door", "resources": "open"}],  # once read as the letters o, p, e, n
        "everything",
    ],
)
def test_a_stored_grant_of_a_bad_shape_refuses_the_token(stored: object) -> None:
    """Rows written around storage's check are refused (401), never widened or crashed on."""
    with pytest.raises(Unauthenticated):
        stored_permissions(stored, "t1")


@pytest.mark.parametrize(
    ("header", "expected"),
    [("Bearer abc", ("bearer", "abc")), ("apitoken  xyz ", ("apitoken", "xyz"))],
)
def test_split_authorization(header: str, expected: tuple[str, str]) -> None:
    assert split_authorization(header) == expected


@pytest.mark.parametrize("header", ["Bearer", "", "   "])
def test_split_authorization_rejects_malformed_headers(header: str) -> None:
    with pytest.raises(Unauthenticated):
        split_authorization(header)
