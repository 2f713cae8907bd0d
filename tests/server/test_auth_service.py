"""AuthService over real gRPC, on SQLite and PostgreSQL: the documented flows and the bad ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import json_format, struct_pb2
from thingwire.auth.v1 import auth_pb2

from server.storage import devices, users
from tests.server.conftest import ServerUnderTest

EMAIL, USERNAME, PASSWORD = "ada@example.com", "ada", "correct horse battery"


@pytest.fixture
def srv(grpc_server: ServerUnderTest) -> ServerUnderTest:
    with grpc_server.database.session() as s:
        users.create_user(s, EMAIL, PASSWORD, USERNAME)
        users.create_user(s, "bob@example.com", "bob's password", "bob")
    return grpc_server


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def login(srv: ServerUnderTest, email: str = EMAIL, password: str = PASSWORD) -> str:
    return srv.auth.Login(auth_pb2.LoginRequest(email=email, password=password)).token


def password_grant(srv: ServerUnderTest, username: str = USERNAME, password: str = PASSWORD):
    form = f"grant_type=password&username={username}&password={password}".encode()
    return srv.auth.CreateToken(
        auth_pb2.CreateTokenRequest(
            raw={"content_type": "application/x-www-form-urlencoded", "data": form}
        )
    )


def refresh_grant(srv: ServerUnderTest, refresh_token: str):
    return srv.auth.CreateToken(
        auth_pb2.CreateTokenRequest(grant_type="refresh_token", refresh_token=refresh_token)
    )


def grants(permissions: object) -> struct_pb2.Value:
    """The token_permissions field, from the JSON a gRPC client means."""
    return json_format.ParseDict(permissions, struct_pb2.Value())


def code_of(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code(), info.value.details()


def test_login_returns_a_jwt_and_the_user(srv: ServerUnderTest) -> None:
    answer = srv.auth.Login(auth_pb2.LoginRequest(email=EMAIL, password=PASSWORD))
    claims = jwt.decode(answer.token, options={"verify_signature": False})
    assert set(claims) == {"exp", "iat", "usr"}
    assert claims["usr"] == USERNAME
    assert claims["exp"] - claims["iat"] == 7200
    assert answer.user.email == EMAIL
    assert answer.user.username == USERNAME
    assert answer.user.timezone == "UTC"
    assert not answer.user.is_local


def test_login_accepts_the_email_in_any_case(srv: ServerUnderTest) -> None:
    assert login(srv, email=EMAIL.upper())


def test_wrong_password_is_unauthenticated(srv: ServerUnderTest) -> None:
    code, _ = code_of(login, srv, password="wrong")
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_unknown_email_answers_like_a_wrong_password(srv: ServerUnderTest) -> None:
    assert code_of(login, srv, email="nobody@example.com") == code_of(login, srv, password="x")


def test_missing_fields_are_invalid(srv: ServerUnderTest) -> None:
    code, details = code_of(srv.auth.Login, auth_pb2.LoginRequest(email=EMAIL))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "password" in details


def test_repeated_failures_throttle_the_account_then_release_it(srv: ServerUnderTest) -> None:
    for _ in range(5):
        assert code_of(login, srv, password="wrong")[0] == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        login(srv)  # even the right password waits out the lock
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry_after = dict(info.value.trailing_metadata())["retry-after"]
    assert int(retry_after) > 0
    srv.clock.advance(seconds=int(retry_after) + 1)
    assert login(srv)


def test_throttling_one_account_leaves_others_alone(srv: ServerUnderTest) -> None:
    for _ in range(6):
        code_of(login, srv, password="wrong")
    assert login(srv, email="bob@example.com", password="bob's password")


def test_current_user_with_a_login_token(srv: ServerUnderTest) -> None:
    me = srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(login(srv)))
    assert me.username == USERNAME


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer not-a-jwt", "Basic YWRhOnB3", "APIToken nope", "Bearer a.b.c"],
)
def test_bad_credentials_are_unauthenticated(srv: ServerUnderTest, header: str) -> None:
    metadata = (("authorization", header),) if header else ()
    code, _ = code_of(srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=metadata)
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_access_token_expires_after_two_hours(srv: ServerUnderTest) -> None:
    token = login(srv)
    srv.clock.advance(hours=2, seconds=1)
    code, details = code_of(
        srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=bearer(token)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in details


def test_a_token_in_use_still_expires_on_time(srv: ServerUnderTest) -> None:
    token = login(srv)
    for _ in range(2):  # verified once, then taken from the signer's memory
        srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(token))
    srv.clock.advance(hours=2)
    code, details = code_of(
        srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=bearer(token)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in details


def test_a_token_in_use_with_one_byte_changed_is_refused(srv: ServerUnderTest) -> None:
    token = login(srv)
    srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(token))
    head, body, signature = token.split(".")
    forged = f"{head}.{body[:-1]}{'A' if body[-1] != 'A' else 'B'}.{signature}"
    code, _ = code_of(
        srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=bearer(forged)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_token_signed_with_another_key_is_refused(srv: ServerUnderTest) -> None:
    forged = jwt.encode({"usr": USERNAME, "iat": 1, "exp": 4102444800}, "x" * 32, "HS256")
    code, _ = code_of(
        srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=bearer(forged)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_password_grant_answers_as_thinger_documents(srv: ServerUnderTest) -> None:
    answer = password_grant(srv)
    assert answer.expires_in == 7200
    assert answer.token_type == "bearer"
    assert answer.scope.WhichOneof("kind") == "null_value"
    access = jwt.decode(answer.access_token, options={"verify_signature": False})
    assert set(access) == {"exp", "iat", "usr"}
    refresh = jwt.decode(answer.refresh_token, options={"verify_signature": False})
    assert set(refresh) == {"exp", "iat", "jti"}
    assert 55 * 86400 < refresh["exp"] - refresh["iat"] < 65 * 86400


def test_password_grant_with_a_wrong_password(srv: ServerUnderTest) -> None:
    code, details = code_of(password_grant, srv, password="nope")
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")


def test_refresh_rotates_and_reuse_revokes_the_family(srv: ServerUnderTest) -> None:
    first = password_grant(srv)
    second = refresh_grant(srv, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    code, details = code_of(refresh_grant, srv, first.refresh_token)  # reuse of a spent one
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "invalid refresh token")
    # The whole family is revoked: the token issued after the spent one no longer works.
    code, details = code_of(refresh_grant, srv, second.refresh_token)
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "invalid refresh token")
    # A fresh login starts a new, healthy family.
    assert refresh_grant(srv, password_grant(srv).refresh_token).access_token


def test_an_access_token_does_not_refresh(srv: ServerUnderTest) -> None:
    access = password_grant(srv).access_token
    assert code_of(refresh_grant, srv, access)[1] == "invalid refresh token"


def test_a_refresh_token_is_not_an_access_token(srv: ServerUnderTest) -> None:
    refresh = password_grant(srv).refresh_token
    code, _ = code_of(
        srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=bearer(refresh)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_expired_refresh_token(srv: ServerUnderTest) -> None:
    refresh = password_grant(srv).refresh_token
    srv.clock.advance(days=61)
    assert code_of(refresh_grant, srv, refresh)[1] == "invalid refresh token"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"grant_type=client_credentials", grpc.StatusCode.INVALID_ARGUMENT),
        (b"username=ada&password=x", grpc.StatusCode.INVALID_ARGUMENT),
        (b"grant_type=password&username=ada", grpc.StatusCode.INVALID_ARGUMENT),
        (b"\xff\xfe", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_token_requests(srv: ServerUnderTest, body: bytes, expected) -> None:
    request = auth_pb2.CreateTokenRequest(
        raw={"content_type": "application/x-www-form-urlencoded", "data": body}
    )
    assert code_of(srv.auth.CreateToken, request)[0] == expected


def test_api_token_lifecycle(srv: ServerUnderTest) -> None:
    session = bearer(login(srv))
    created = srv.auth.CreateApiToken(auth_pb2.CreateApiTokenRequest(name="ci"), metadata=session)
    api = (("authorization", f"APIToken {created.token}"),)
    assert (
        srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=api).username == USERNAME
    )
    listed = srv.auth.ListApiTokens(auth_pb2.ListApiTokensRequest(), metadata=session)
    assert [t.name for t in listed.api_tokens] == ["ci"]
    assert created.token not in str(listed)
    srv.auth.DeleteApiToken(auth_pb2.DeleteApiTokenRequest(id=created.id), metadata=session)
    code, _ = code_of(srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=api)
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_api_token_expiry(srv: ServerUnderTest) -> None:
    session = bearer(login(srv))
    expire = {"seconds": int(srv.clock.now.timestamp()) + 60}
    created = srv.auth.CreateApiToken(
        auth_pb2.CreateApiTokenRequest(name="short", expire_time=expire), metadata=session
    )
    api = (("authorization", f"APIToken {created.token}"),)
    assert srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=api)
    srv.clock.advance(seconds=61)
    code, _ = code_of(srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=api)
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_users_cannot_touch_each_others_api_tokens(srv: ServerUnderTest) -> None:
    ada = bearer(login(srv))
    bob = bearer(login(srv, "bob@example.com", "bob's password"))
    created = srv.auth.CreateApiToken(auth_pb2.CreateApiTokenRequest(name="mine"), metadata=ada)
    code, _ = code_of(
        srv.auth.DeleteApiToken, auth_pb2.DeleteApiTokenRequest(id=created.id), metadata=bob
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert srv.auth.ListApiTokens(auth_pb2.ListApiTokensRequest(), metadata=bob).api_tokens == []


def test_negative_page_size_is_invalid(srv: ServerUnderTest) -> None:
    code, _ = code_of(
        srv.auth.ListApiTokens,
        auth_pb2.ListApiTokensRequest(page_size=-1),
        metadata=bearer(login(srv)),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_user_access_token_is_scoped_and_revocable(srv: ServerUnderTest) -> None:
    session = bearer(login(srv))
    created = srv.auth.CreateAccessToken(
        auth_pb2.CreateAccessTokenRequest(
            user_id=USERNAME,
            token_name="door",
            token_permissions=grants(
                [{"device": "nodemcu", "resources": ["open"], "actions": ["call"]}]
            ),
        ),
        metadata=session,
    )
    claims = jwt.decode(created.token, options={"verify_signature": False})
    assert "exp" not in claims  # user tokens do not expire by default
    scoped = bearer(created.token)
    assert srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=scoped).username
    # A scoped token may not manage tokens.
    code, _ = code_of(
        srv.auth.CreateAccessToken,
        auth_pb2.CreateAccessTokenRequest(user_id=USERNAME, token_name="more"),
        metadata=scoped,
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    listed = srv.auth.ListAccessTokens(
        auth_pb2.ListAccessTokensRequest(user_id=USERNAME), metadata=session
    )
    assert [v.struct_value["name"] for v in listed.values] == ["door"]
    srv.auth.DeleteAccessToken(
        auth_pb2.DeleteAccessTokenRequest(user_id=USERNAME, token_id=created.id), metadata=session
    )
    code, _ = code_of(srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=scoped)
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_access_tokens_of_another_user_are_refused(srv: ServerUnderTest) -> None:
    code, _ = code_of(
        srv.auth.ListAccessTokens,
        auth_pb2.ListAccessTokensRequest(user_id="bob"),
        metadata=bearer(login(srv)),
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def refused_user_token(srv: ServerUnderTest, **fields: Any) -> tuple[grpc.StatusCode, str]:
    """The status and details of a CreateAccessToken that must fail, from a login session."""
    request = auth_pb2.CreateAccessTokenRequest(user_id=USERNAME, token_name="x", **fields)
    return code_of(srv.auth.CreateAccessToken, request, metadata=bearer(login(srv)))


@pytest.mark.parametrize(
    ("permissions", "expected"),
    [
        ([{"device": "door", "actions": ["fly"]}], "unknown actions ['fly']"),
        # A missing device (JSON null arrives as the empty default) is not "every device".
        ([{"actions": ["read"]}], "permissions[0].device is required"),
        ([{"device": "*"}] * 10_000, "at most 100 permissions"),
        ([{"device": "*", "resources": ["r"] * 10_000}], "at most 100 resources"),
        ([{"device": "*", "actions": ["read"] * 10_000}], "at most 100 actions"),
        ([None], "permissions[0] must be an object"),
        ([], "at least one permission; leave them out for full access"),
        (None, "permissions must be a list"),
        ({"device": "*"}, "permissions must be a list"),
        ([{"device": "*", "extra": 1}], "unknown fields: ['extra']"),
        ([{"device": "d1", "actions": "call"}], "actions must be a list of strings"),
        ([{"device": "d1", "resources": None}], "resources must be a list of strings"),
    ],
)
def test_bad_permission_shapes_are_invalid(
    srv: ServerUnderTest, permissions: object, expected: str
) -> None:
    code, details = refused_user_token(srv, token_permissions=grants(permissions))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in details


def test_permissions_of_no_kind_are_invalid_not_full_access(srv: ServerUnderTest) -> None:
    """A Value with nothing set (what a client of the old repeated field's bytes decodes to)
    is refused like a null: only a field left out asks for full access."""
    code, details = refused_user_token(srv, token_permissions=struct_pb2.Value())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "permissions must be a list"
    old = auth_pb2.AccessTokenPermission(device="door", actions=["read"]).SerializeToString()
    request = auth_pb2.CreateAccessTokenRequest(user_id=USERNAME, token_name="x")
    request.MergeFromString(b"\x1a" + bytes([len(old)]) + old)  # field 3, as the old type
    code, _ = code_of(srv.auth.CreateAccessToken, request, metadata=bearer(login(srv)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def revoke(srv: ServerUnderTest, token: str) -> tuple[bytes, list[tuple[str, str | bytes]]]:
    """Revoke `token`; returns what the client sees: the response's bytes and all metadata."""
    form = f"token={token}".encode()
    response, call = srv.auth.RevokeToken.with_call(
        auth_pb2.RevokeTokenRequest(
            raw={"content_type": "application/x-www-form-urlencoded", "data": form}
        )
    )
    metadata = [*call.initial_metadata(), *call.trailing_metadata()]
    return response.SerializeToString(), [(m.key, m.value) for m in metadata]


def test_revoking_a_refresh_token_retires_its_family(srv: ServerUnderTest) -> None:
    first = password_grant(srv)
    second = refresh_grant(srv, first.refresh_token)
    other_login = password_grant(srv)
    revoke(srv, first.refresh_token)  # the spent ancestor still names the family
    assert code_of(refresh_grant, srv, second.refresh_token)[1] == "invalid refresh token"
    # Another login's family is untouched.
    assert refresh_grant(srv, other_login.refresh_token).access_token


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
def test_revoking_junk_answers_ok_and_reveals_nothing(srv: ServerUnderTest, token: str) -> None:
    """Junk gets exactly the answer a real refresh token gets (RFC 7009), and revokes nothing."""
    pair = password_grant(srv)
    junk = revoke(srv, token)
    assert refresh_grant(srv, pair.refresh_token).access_token  # nothing was revoked
    assert junk == revoke(srv, password_grant(srv).refresh_token)


def test_revoking_an_access_token_changes_nothing(srv: ServerUnderTest) -> None:
    pair = password_grant(srv)
    revoke(srv, pair.access_token)
    assert refresh_grant(srv, pair.refresh_token).access_token


def test_revoke_needs_a_token(srv: ServerUnderTest) -> None:
    code, details = code_of(srv.auth.RevokeToken, auth_pb2.RevokeTokenRequest())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "token" in details


def test_a_token_older_than_its_account_is_refused(srv: ServerUnderTest) -> None:
    """An old token naming a user name that now belongs to a newer account opens nothing."""
    stale = srv.running.state.signer.access_token("carol", srv.clock.now - timedelta(minutes=30))
    with srv.database.session() as s:
        users.create_user(s, "carol@example.com", PASSWORD, "carol")
    code, _ = code_of(
        srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=bearer(stale)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    fresh = srv.running.state.signer.access_token("carol", srv.clock.now)
    me = srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(fresh))
    assert me.username == "carol"


def _user_token(srv: ServerUnderTest, permissions: list[dict] | None = None) -> str:
    return srv.auth.CreateAccessToken(
        auth_pb2.CreateAccessTokenRequest(
            user_id=USERNAME,
            token_name="t",
            token_permissions=grants(permissions) if permissions is not None else None,
        ),
        metadata=bearer(login(srv)),
    ).token


def _api_token(srv: ServerUnderTest) -> str:
    return srv.auth.CreateApiToken(
        auth_pb2.CreateApiTokenRequest(name="api"), metadata=bearer(login(srv))
    ).token


@pytest.mark.parametrize("kind", ["scoped user token", "unscoped user token", "api token"])
def test_no_token_can_mint_or_manage_tokens(srv: ServerUnderTest, kind: str) -> None:
    """Only a login session manages credentials, so no token can mint a stronger one."""
    if kind == "api token":
        metadata: tuple[tuple[str, str], ...] = (("authorization", f"APIToken {_api_token(srv)}"),)
    else:
        grants = [{"device": "door", "actions": ["read"]}] if kind.startswith("scoped") else None
        metadata = bearer(_user_token(srv, grants))
    calls = [
        (
            srv.auth.CreateAccessToken,
            auth_pb2.CreateAccessTokenRequest(user_id=USERNAME, token_name="x"),
        ),
        (srv.auth.ListAccessTokens, auth_pb2.ListAccessTokensRequest(user_id=USERNAME)),
        (
            srv.auth.DeleteAccessToken,
            auth_pb2.DeleteAccessTokenRequest(user_id=USERNAME, token_id="x"),
        ),
        (srv.auth.CreateApiToken, auth_pb2.CreateApiTokenRequest(name="x")),
        (srv.auth.ListApiTokens, auth_pb2.ListApiTokensRequest()),
        (srv.auth.DeleteApiToken, auth_pb2.DeleteApiTokenRequest(id=1)),
    ]
    for call, request in calls:
        code, _ = code_of(call, request, metadata=metadata)
        assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), call


def test_a_scoped_token_sees_only_its_devices(srv: ServerUnderTest) -> None:
    with srv.database.session() as s:
        ada = users.get_user_by_login(s, USERNAME)
        assert ada is not None
        devices.create_device(s, ada.id, "door", "door-credentials", "Front door")
        devices.create_device(s, ada.id, "car", "car-credentials", "Car")
    full = srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(login(srv)))
    assert sorted(d.display for d in full.devices) == ["Car", "Front door"]
    scoped = bearer(_user_token(srv, [{"device": "door", "actions": ["read"]}]))
    me = srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=scoped)
    assert [d.display for d in me.devices] == ["Front door"]
    call_only = bearer(_user_token(srv, [{"device": "*", "actions": ["call"]}]))
    nothing = srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=call_only)
    assert list(nothing.devices) == []
    assert nothing.has_devices is False


def _signed(srv: ServerUnderTest, claims: dict) -> str:
    """A token with arbitrary claims, signed with the server's real key."""
    key = srv.keys.ring().current
    return jwt.encode(claims, key.secret, "HS256", headers={"kid": key.kid})


@pytest.mark.parametrize(
    "claims",
    [
        {"iat": 1, "usr": USERNAME},  # a login token with no expiry
        {"iat": 1, "usr": USERNAME, "exp": 1e20},
        {"iat": 1, "usr": USERNAME, "exp": 1e308},
        {"iat": -1e12, "usr": USERNAME, "exp": 4102444800},
        {"iat": 1, "usr": USERNAME, "exp": "4102444800"},
        {"iat": 1, "usr": USERNAME, "exp": True},
        {"iat": 1, "usr": EMAIL, "exp": 4102444800},  # tokens carry the user name only
        {"iat": 1, "usr": f" {USERNAME} ", "exp": 4102444800},
        {"iat": 1, "usr": ["ada"], "exp": 4102444800},
        {"iat": 1, "usr": USERNAME, "exp": 4102444800, "typ": "user"},  # no jti
    ],
)
def test_crafted_tokens_are_refused_not_crashed(srv: ServerUnderTest, claims: dict) -> None:
    code, _ = code_of(
        srv.auth.GetCurrentUser,
        auth_pb2.GetCurrentUserRequest(),
        metadata=bearer(_signed(srv, claims)),
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_well_formed_token_signed_with_the_key_is_accepted(srv: ServerUnderTest) -> None:
    """The control for the test above: the same helper makes a token that works."""
    now = int(srv.clock.now.timestamp())
    token = _signed(srv, {"iat": now, "usr": USERNAME, "exp": now + 60})
    assert srv.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(token))


@pytest.mark.parametrize(
    ("expiration", "message"),
    [
        (253402300800000, "token_expiration is out of range"),
        (2**62, "token_expiration is out of range"),
        # -5 once meant "never expires"; only 0 (or unset) means that.
        (-5, "token_expiration must be in the future"),
        (-1, "token_expiration must be in the future"),
        (1, "token_expiration must be in the future"),
    ],
)
def test_a_token_expiration_out_of_range_or_in_the_past_is_invalid(
    srv: ServerUnderTest, expiration: int, message: str
) -> None:
    code, details = refused_user_token(srv, token_expiration=expiration)
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_a_trailing_ampersand_in_the_form_is_fine(srv: ServerUnderTest) -> None:
    form = f"grant_type=password&username={USERNAME}&password={PASSWORD}&".encode()
    answer = srv.auth.CreateToken(
        auth_pb2.CreateTokenRequest(
            raw={"content_type": "application/x-www-form-urlencoded", "data": form}
        )
    )
    assert answer.access_token


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "t\x00x", "a\nb"])
def test_token_names_are_checked(srv: ServerUnderTest, name: str) -> None:
    session = bearer(login(srv))
    for call, request in [
        (srv.auth.CreateApiToken, auth_pb2.CreateApiTokenRequest(name=name)),
        (
            srv.auth.CreateAccessToken,
            auth_pb2.CreateAccessTokenRequest(user_id=USERNAME, token_name=name),
        ),
    ]:
        code, details = code_of(call, request, metadata=session)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "name" in details


def test_an_api_token_expiring_in_the_past_is_refused(srv: ServerUnderTest) -> None:
    past = {"seconds": int(srv.clock.now.timestamp()) - 1}
    code, details = code_of(
        srv.auth.CreateApiToken,
        auth_pb2.CreateApiTokenRequest(name="old", expire_time=past),
        metadata=bearer(login(srv)),
    )
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "expire_time must be in the future",
    )
