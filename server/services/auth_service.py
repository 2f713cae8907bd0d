"""AuthService: AutoPi login and API tokens, Thinger OAuth grants and user tokens.

Thin by design: validate the request, call storage in one worker-thread transaction,
build the answer. Errors are domain exceptions; the interceptor turns them into statuses.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from google.protobuf import struct_pb2
from sqlalchemy.orm import Session
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc

from server.auth.permissions import FULL_ACCESS
from server.auth.principal import Action, UserPrincipal, require_self, require_user
from server.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from server.request_origin import client_of
from server.security.jwt_tokens import ACCESS_TOKEN_LIFETIME, REFRESH_TOKEN_LIFETIME
from server.services.convert import (
    datetime_or_none,
    epoch_ms,
    epoch_ms_or_none,
    json_sent,
    timestamp,
)
from server.services.token_form import TokenForm, parse_revoke_request, parse_token_request
from server.state import AppState
from server.storage import users
from server.storage.loop_reads import LoopReads
from server.storage.models import RefreshToken
from server.storage.tokens import api_tokens, refresh_tokens, user_tokens

INVALID_REFRESH_TOKEN = refresh_tokens.INVALID_REFRESH


def user_message(
    profile: users.Profile, can_see: Callable[[str], bool] = lambda _device: True
) -> auth_pb2.User:
    """The AutoPi user object, with the user's devices that `can_see` admits by device id."""
    owned = [d for d in profile.devices if can_see(d.device_id)]
    return auth_pb2.User(
        pk=profile.id,
        username=profile.username,
        email=profile.email,
        has_devices=bool(owned),
        is_local=False,
        devices=[
            auth_pb2.UserDevice(unit_id=d.unit_id, display=d.description or d.device_id)
            for d in owned
        ],
        timezone=profile.timezone,
    )


def _require_session(principal: UserPrincipal) -> None:
    """AutoPi API tokens are managed only from a login session (403 otherwise)."""
    if not principal.is_session:
        raise PermissionDenied("API tokens are managed with a login token")


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    """Implements thingwire.auth.v1.AuthService."""

    def __init__(self, state: AppState) -> None:
        self._state = state
        # GetCurrentUser's one statement, on the loop's thread where that is cheap.
        self._reads = LoopReads(state.database)

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        if not request.email or not request.password:
            raise InvalidArgument("email and password are required")
        now = self._state.clock()
        user = await self._state.logins.check(
            request.email, request.password, client_of(context), now
        )
        token = self._state.signer.access_token(user.username, now)
        profile = await self._profile(user.id)
        return auth_pb2.LoginResponse(token=token, user=user_message(profile))

    async def GetCurrentUser(
        self, request: auth_pb2.GetCurrentUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.User:
        principal = require_user()

        def can_see(device_id: str) -> bool:
            # A scoped token sees only the devices it may read.
            return principal.allows(Action.READ, device_id)

        return user_message(await self._profile(principal.user_id), can_see)

    async def _profile(self, user_id: int) -> users.Profile:
        rows = await self._reads.rows(users.PROFILE, {"user_id": user_id})
        return users.profile_of(rows, user_id)

    async def CreateToken(
        self, request: auth_pb2.CreateTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateTokenResponse:
        form = parse_token_request(request)
        if form.grant_type == "password":
            return await self._password_grant(form, context)
        if form.grant_type == "refresh_token":
            return await self._refresh_grant(form)
        raise InvalidArgument(f"unsupported grant_type {form.grant_type!r}")

    async def _password_grant(
        self, form: TokenForm, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateTokenResponse:
        if not form.username or not form.password:
            raise InvalidArgument("username and password are required")
        now = self._state.clock()
        user = await self._state.logins.check(form.username, form.password, client_of(context), now)
        refresh = await self._state.database.run(
            lambda s: refresh_tokens.issue_refresh_token(
                s, user.id, None, now + REFRESH_TOKEN_LIFETIME, now
            )
        )
        return self._token_pair(user.username, refresh)

    async def _refresh_grant(self, form: TokenForm) -> auth_pb2.CreateTokenResponse:
        if not form.refresh_token:
            raise InvalidArgument("refresh_token is required")
        now = self._state.clock()
        try:
            claims = self._state.signer.verify(form.refresh_token, now)
        except Unauthenticated:
            raise Unauthenticated(INVALID_REFRESH_TOKEN) from None
        if claims.jti is None or claims.username is not None:
            raise Unauthenticated(INVALID_REFRESH_TOKEN)
        jti = claims.jti

        def grant(s: Session) -> auth_pb2.CreateTokenResponse:
            spent = refresh_tokens.consume_refresh_token(s, jti, now)
            user = users.get_user(s, spent.user_id)
            refresh = refresh_tokens.issue_refresh_token(
                s, user.id, spent.family_id, now + REFRESH_TOKEN_LIFETIME, now
            )
            return self._token_pair(user.username, refresh)

        try:
            return await self._state.database.run(grant)
        except refresh_tokens.RefreshTokenReplayed as replay:
            # The rotation rolled back; the family's revocation commits in its own unit of
            # work, so that it outlives the refusal.
            family = replay.family_id
            await self._state.database.run(
                lambda s: refresh_tokens.revoke_refresh_family(s, family, now)
            )
            raise Unauthenticated(INVALID_REFRESH_TOKEN) from None

    async def RevokeToken(
        self, request: auth_pb2.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RevokeTokenResponse:
        token = parse_revoke_request(request)
        now = self._state.clock()
        try:
            claims = self._state.signer.verify(token, now)
        except Unauthenticated:
            # Expired, forged or garbage: nothing usable to revoke, and nothing to reveal.
            return auth_pb2.RevokeTokenResponse()
        if claims.jti is not None and claims.username is None:
            jti = claims.jti
            await self._state.database.run(
                lambda s: refresh_tokens.revoke_refresh_token(s, jti, now)
            )
        return auth_pb2.RevokeTokenResponse()

    def _token_pair(self, username: str, refresh: RefreshToken) -> auth_pb2.CreateTokenResponse:
        signer = self._state.signer
        return auth_pb2.CreateTokenResponse(
            access_token=signer.access_token(username, refresh.issue_time),
            expires_in=int(ACCESS_TOKEN_LIFETIME.total_seconds()),
            refresh_token=signer.refresh_token(
                refresh.jti, refresh.issue_time, refresh.expire_time
            ),
            scope=struct_pb2.Value(null_value=struct_pb2.NULL_VALUE),
            token_type="bearer",  # noqa: S106 - the documented literal
        )

    async def CreateApiToken(
        self, request: auth_pb2.CreateApiTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateApiTokenResponse:
        principal = require_user()
        _require_session(principal)
        now = self._state.clock()
        expire_time = datetime_or_none(
            request.expire_time, request.HasField("expire_time"), "expire_time"
        )
        # Storage checks the name and that the expiry lies ahead.
        row, secret = await self._state.database.run(
            lambda s: api_tokens.create_api_token(
                s, principal.user_id, request.name, expire_time, now
            )
        )
        return auth_pb2.CreateApiTokenResponse(
            id=row.id, name=row.name, token=secret, expire_time=timestamp(row.expire_time)
        )

    async def ListApiTokens(
        self, request: auth_pb2.ListApiTokensRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListApiTokensResponse:
        principal = require_user()
        _require_session(principal)
        rows, next_token = await self._state.database.run(
            lambda s: api_tokens.list_api_tokens(
                s, principal.user_id, request.page_size, request.page_token
            )
        )
        return auth_pb2.ListApiTokensResponse(
            api_tokens=[
                auth_pb2.ApiToken(
                    id=r.id,
                    name=r.name,
                    create_time=timestamp(r.create_time),
                    expire_time=timestamp(r.expire_time),
                )
                for r in rows
            ],
            next_page_token=next_token,
        )

    async def DeleteApiToken(
        self, request: auth_pb2.DeleteApiTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.DeleteApiTokenResponse:
        principal = require_user()
        _require_session(principal)
        await self._state.database.run(
            lambda s: api_tokens.delete_api_token(s, principal.user_id, request.id)
        )
        return auth_pb2.DeleteApiTokenResponse()

    async def CreateAccessToken(
        self, request: auth_pb2.CreateAccessTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateAccessTokenResponse:
        principal = require_user()
        require_self(principal, request.user_id)
        # Refused by `server.auth.permissions` unless a list of grants.
        permissions = json_sent(request, "token_permissions", FULL_ACCESS)
        now = self._state.clock()
        expire_time = epoch_ms_or_none(request.token_expiration, "token_expiration")
        # Storage checks the name, the permissions and that the expiry lies ahead.
        row = await self._state.database.run(
            lambda s: user_tokens.create_access_token(
                s, principal.user_id, request.token_name, permissions, expire_time, now
            )
        )
        token = self._state.signer.user_token(principal.username, row.id, now, expire_time)
        return auth_pb2.CreateAccessTokenResponse(id=row.id, name=row.name, token=token)

    async def ListAccessTokens(
        self, request: auth_pb2.ListAccessTokensRequest, context: grpc.aio.ServicerContext
    ) -> struct_pb2.ListValue:
        principal = require_user()
        require_self(principal, request.user_id)
        rows = await self._state.database.run(
            lambda s: user_tokens.list_access_tokens(s, principal.user_id)
        )
        listing = struct_pb2.ListValue()
        for r in rows:
            entry = listing.add_struct()
            entry.update(
                {
                    "id": r.id,
                    "name": r.name,
                    "permissions": r.permissions or [],
                    "create_time": epoch_ms(r.create_time),
                    "token_expiration": (epoch_ms(r.expire_time) if r.expire_time else None),
                }
            )
        return listing

    async def DeleteAccessToken(
        self, request: auth_pb2.DeleteAccessTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.DeleteAccessTokenResponse:
        principal = require_user()
        require_self(principal, request.user_id)
        if not request.token_id:
            raise NotFound("token not found")
        await self._state.database.run(
            lambda s: user_tokens.delete_access_token(s, principal.user_id, request.token_id)
        )
        return auth_pb2.DeleteAccessTokenResponse()
