"""The shape of a Thinger user token's permissions, parsed and checked in this one place.

A user-defined token carries a list of grants, each ``{"device", "resources", "actions"}``:
``device`` is a device id or ``"*"`` (required: a missing or null device is refused, never
read as "every device"), ``resources`` the resource names it may call (empty: all), and
``actions`` what it may do (empty: read and call). Storage refuses any other shape before a
token is written (``InvalidArgument``, 400 through the gateway) and stores the canonical
form that `permissions_json` returns; the authenticator reads stored grants back with
`parse_permissions`, so a token that was accepted is always one that can be used.

Parsing is strict, because a grant read loosely is a grant widened: the list must be a JSON
list of objects with the three keys and no others, ``device`` a non-empty string, ``resources``
and ``actions`` lists of strings (a key may be left out, never null), and a null anywhere is
refused. Full access is asked for only by leaving the permissions out (`FULL_ACCESS`, None); an
empty list is refused, so nothing a client or a proxy drops can become full access by accident.
Stored, full access is the empty list `permissions_json` writes; `stored_permissions` reads it.

Limits keep a token small (it is read on every call it makes): at most `MAX_PERMISSIONS`
grants, and at most `MAX_ENTRIES` resources or actions in one grant.
"""

from __future__ import annotations

from collections.abc import Sequence

from server.auth.principal import ANY_DEVICE, DEFAULT_ACTIONS, Action, Permission
from server.errors import InvalidArgument
from server.storage.devices import DEVICE_ID_RE

__all__ = [
    "FULL_ACCESS",
    "MAX_ENTRIES",
    "MAX_PERMISSIONS",
    "MAX_RESOURCE_LENGTH",
    "NULL",
    "parse_permissions",
    "permissions_json",
    "stored_permissions",
]

MAX_PERMISSIONS = 100
MAX_ENTRIES = 100
MAX_RESOURCE_LENGTH = 100
_KEYS = frozenset({"device", "resources", "actions"})
_ACTIONS = tuple(a.value for a in Action)
_ABSENT = object()
FULL_ACCESS = None
"""What the permissions are when a client leaves them out: the whole account."""


def _names(where: str, key: str, value: object) -> list[str]:
    """A list of strings under ``key`` (absent: empty); InvalidArgument for anything else,
    null included."""
    if value is _ABSENT:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{where}.{key} must be a list of strings")
    if len(value) > MAX_ENTRIES:
        raise InvalidArgument(f"{where} may name at most {MAX_ENTRIES} {key}")
    return value


def _device(where: str, value: object) -> str:
    if value is _ABSENT or value is None or value == "":
        raise InvalidArgument(f'{where}.device is required: a device id, or "*" for every device')
    if not isinstance(value, str) or not (value == ANY_DEVICE or DEVICE_ID_RE.fullmatch(value)):
        raise InvalidArgument(f'{where}.device must be a device id or "*"')
    return value


def _permission(index: int, entry: object) -> Permission:
    where = f"permissions[{index}]"
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{where} must be an object")
    unknown = set(entry) - _KEYS
    if unknown:
        raise InvalidArgument(f"{where} has unknown fields: {sorted(unknown)}")
    device = _device(where, entry.get("device", _ABSENT))
    resources = _names(where, "resources", entry.get("resources", _ABSENT))
    if any(not r or len(r) > MAX_RESOURCE_LENGTH for r in resources):
        raise InvalidArgument(
            f"{where}.resources must be names of 1 to {MAX_RESOURCE_LENGTH} characters"
        )
    actions = _names(where, "actions", entry.get("actions", _ABSENT))
    unknown_actions = sorted(set(actions) - set(_ACTIONS))
    if unknown_actions:
        raise InvalidArgument(
            f"{where} has unknown actions {unknown_actions}; use {list(_ACTIONS)}"
        )
    return Permission(
        device=device,
        resources=frozenset(resources),
        actions=frozenset(Action(a) for a in actions) or DEFAULT_ACTIONS,
    )


def parse_permissions(raw: object = FULL_ACCESS) -> tuple[Permission, ...] | None:
    """The grants a client sent, as JSON; `FULL_ACCESS` (None) only when it sent none.

    ``raw`` is None only for permissions left out; a JSON null that was sent must reach this
    function as something else (the servicer passes `NULL`), so it is refused like any other
    shape that is not a non-empty list of grants.
    """
    if raw is FULL_ACCESS:
        return FULL_ACCESS
    if not isinstance(raw, list):
        raise InvalidArgument("permissions must be a list")
    if not raw:
        raise InvalidArgument(
            "permissions must list at least one permission; leave them out for full access"
        )
    if len(raw) > MAX_PERMISSIONS:
        raise InvalidArgument(f"a token may carry at most {MAX_PERMISSIONS} permissions")
    return tuple(_permission(i, entry) for i, entry in enumerate(raw))


NULL = object()
"""Stands for a JSON null sent where the permissions belong: refused, never full access
(decoded JSON has None for both a null and a value left out)."""


def stored_permissions(raw: object) -> tuple[Permission, ...] | None:
    """The grants of a stored token, in the form `permissions_json` wrote (``[]``: full access).

    A stored null is not the absence of a choice but a row written around storage: refused.
    """
    if raw == []:
        return FULL_ACCESS
    return parse_permissions(NULL if raw is None else raw)


def permissions_json(permissions: Sequence[Permission] | None) -> list[dict[str, object]]:
    """The canonical stored form: every key present, names in a fixed order; full access is
    the empty list, which only `stored_permissions` reads back as such."""
    return [
        {
            "device": p.device,
            "resources": sorted(p.resources),
            "actions": [a for a in _ACTIONS if a in p.actions],
        }
        for p in permissions or ()
    ]
