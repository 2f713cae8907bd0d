"""The shape of a Thinger user token's permissions, parsed and checked in this one place.

A user-defined token carries a list of grants, each ``{"device", "resources", "actions"}``:
``device`` is a device id or ``"*"`` (required: a missing or null device is refused, never
read as "every device"), ``resources`` the resource names it may call (empty: all), and
``actions`` what it may do (empty: read and call). Storage refuses any other shape before a
token is written (``InvalidArgument``, 400 through the gateway) and stores the canonical
form that `permissions_json` returns; the authenticator reads stored grants back with
`parse_permissions`, so a token that was accepted is always one that can be used.

Limits keep a token small (it is read on every call it makes): at most `MAX_PERMISSIONS`
grants, and at most `MAX_ENTRIES` resources or actions in one grant.
"""

from __future__ import annotations

from collections.abc import Sequence

from server.auth.principal import ANY_DEVICE, DEFAULT_ACTIONS, Action, Permission
from server.errors import InvalidArgument
from server.storage.devices import DEVICE_ID_RE

__all__ = [
    "MAX_ENTRIES",
    "MAX_PERMISSIONS",
    "MAX_RESOURCE_LENGTH",
    "parse_permissions",
    "permissions_json",
]

MAX_PERMISSIONS = 100
MAX_ENTRIES = 100
MAX_RESOURCE_LENGTH = 100
_KEYS = frozenset({"device", "resources", "actions"})
_ACTIONS = tuple(a.value for a in Action)


def _names(where: str, key: str, value: object) -> list[str]:
    """A list of strings under ``key`` (absent: empty); InvalidArgument for anything else."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{where}.{key} must be a list of strings")
    if len(value) > MAX_ENTRIES:
        raise InvalidArgument(f"{where} may name at most {MAX_ENTRIES} {key}")
    return value


def _device(where: str, value: object) -> str:
    if value is None or value == "":
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
    device = _device(where, entry.get("device"))
    resources = _names(where, "resources", entry.get("resources"))
    if any(not r or len(r) > MAX_RESOURCE_LENGTH for r in resources):
        raise InvalidArgument(
            f"{where}.resources must be names of 1 to {MAX_RESOURCE_LENGTH} characters"
        )
    actions = _names(where, "actions", entry.get("actions"))
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


def parse_permissions(raw: object) -> tuple[Permission, ...] | None:
    """The grants in ``raw`` (JSON as sent or stored); None (full access) for none at all."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidArgument("permissions must be a list")
    if len(raw) > MAX_PERMISSIONS:
        raise InvalidArgument(f"a token may carry at most {MAX_PERMISSIONS} permissions")
    return tuple(_permission(i, entry) for i, entry in enumerate(raw)) or None


def permissions_json(permissions: Sequence[Permission] | None) -> list[dict[str, object]]:
    """The canonical stored form: every key present, names in a fixed order."""
    return [
        {
            "device": p.device,
            "resources": sorted(p.resources),
            "actions": [a for a in _ACTIONS if a in p.actions],
        }
        for p in permissions or ()
    ]
