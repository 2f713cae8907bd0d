"""Who a request is authenticated as, and what it may do.

The auth interceptor sets the principal of each call in a context variable; servicers ask
for the kind they need (`require_user`, `require_organization`, `require_device`). Scoped
tokens carry their permissions here, so one check (`UserPrincipal.allows`) serves every rpc.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from enum import StrEnum

from server.errors import Unauthenticated


class Action(StrEnum):
    """What a scoped token may be allowed to do; see AccessTokenPermission in auth.proto."""

    READ = "read"
    CALL = "call"
    WRITE = "write"


DEFAULT_ACTIONS = frozenset({Action.READ, Action.CALL})
ANY_DEVICE = "*"


@dataclass(frozen=True)
class Permission:
    """One grant of a user-defined token: some actions on a device (or all) and resources."""

    device: str
    resources: frozenset[str] = frozenset()
    actions: frozenset[Action] = DEFAULT_ACTIONS

    def covers(self, action: Action, device: str | None, resource: str | None) -> bool:
        """Whether this grant admits `action` on `device`/`resource` (None: any/none)."""
        if action not in self.actions:
            return False
        if self.device != ANY_DEVICE and device != self.device:
            return False
        return not (self.resources and resource is not None and resource not in self.resources)


@dataclass(frozen=True)
class UserPrincipal:
    """A user, through a login JWT, an API token or a user-defined (maybe scoped) token."""

    user_id: int
    username: str
    # None: full access to the account. A tuple: only what these grants allow.
    permissions: tuple[Permission, ...] | None = None
    credential: str = field(default="jwt", compare=False)

    @property
    def is_session(self) -> bool:
        """A login session (AutoPi login, Thinger grant): the only credential that may
        create, list or revoke credentials, so no token can mint a stronger one."""
        return self.credential == "jwt"

    def allows(
        self, action: Action, device: str | None = None, resource: str | None = None
    ) -> bool:
        """Whether the credential may do `action`; unscoped credentials may do anything."""
        if self.permissions is None:
            return True
        return any(p.covers(action, device, resource) for p in self.permissions)


@dataclass(frozen=True)
class OrganizationPrincipal:
    """A Datacooee organisation, by its ORGANIZATION-ID and ORGANIZATION-API-KEY headers."""

    org_id: str


@dataclass(frozen=True)
class DevicePrincipal:
    """A device, by its push token (AutoPi "Auth Token"): it may only upload its records.

    A kind of its own, so no check that wants a user (`require_user`) ever admits it.
    """

    device_pk: int
    user_id: int
    device_id: str
    unit_id: str


Principal = UserPrincipal | OrganizationPrincipal | DevicePrincipal

current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "current_principal", default=None
)


def require_user() -> UserPrincipal:
    """The calling user; the interceptor guarantees one on ACCESS_USER rpcs."""
    principal = current_principal.get()
    if not isinstance(principal, UserPrincipal):
        raise Unauthenticated("authentication required")
    return principal


def require_path_user(principal: UserPrincipal, user_id: str) -> None:
    """Thinger paths name the user (USER_ID): it must be the caller, or the answer is 401.

    The same answer whether or not that user exists, so paths reveal no accounts.
    """
    if user_id != principal.username:
        raise Unauthenticated(f"not authorized for user {user_id!r}")


def require_device_access(
    principal: UserPrincipal,
    user_id: str,
    action: Action,
    device_id: str,
    resource: str | None = None,
) -> None:
    """The path's user must be the caller, and the credential must allow `action` on the
    device (and resource): else 401, the same whether or not the device exists."""
    require_path_user(principal, user_id)
    if not principal.allows(action, device_id, resource):
        raise Unauthenticated(f"not authorized for device {device_id!r}")


def require_self(principal: UserPrincipal, user_id: str) -> None:
    """A Thinger path that manages credentials (user tokens, devices, device tokens): only
    that user's login session may use it, so that no token can mint or revoke another.

    Both refusals are 401, the one status Thinger documents for authorization failures.
    """
    require_path_user(principal, user_id)
    if not principal.is_session:
        raise Unauthenticated("this is managed with a login token, not with another token")


def require_device() -> DevicePrincipal:
    """The calling device; the interceptor guarantees one on ACCESS_DEVICE rpcs."""
    principal = current_principal.get()
    if not isinstance(principal, DevicePrincipal):
        raise Unauthenticated("a device push token is required")
    return principal


def require_organization() -> OrganizationPrincipal:
    """The calling organisation; the interceptor guarantees one on ACCESS_ORGANIZATION rpcs."""
    principal = current_principal.get()
    if not isinstance(principal, OrganizationPrincipal):
        raise Unauthenticated("organization credentials required")
    return principal
