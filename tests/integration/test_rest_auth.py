"""The documented authentication requests, sent as curl would, through the real Envoy.

One stack per module and database kind (SQLite and PostgreSQL, see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from server.security.jwt_tokens import TokenSigner
from server.security.keys import KeyFile
from server.storage import tokens
from server.storage.db import Database
from tests.integration.conftest import PASSWORD
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GRPC_HEADERS = ("grpc-status", "grpc-message", "grpc-accept-encoding", "grpc-encoding")


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.http() as http:
        yield http


def autopi_login(client: httpx.Client, email: str = "ada@example.com") -> str:
    answer = client.post("/auth/login/", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def oauth(client: httpx.Client, body: str) -> httpx.Response:
    return client.post("/oauth/token", content=body, headers=FORM)


# --- AutoPi: POST /auth/login/ ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/login/", "/auth/login"])
def test_autopi_login(client: httpx.Client, ada: dict, path: str) -> None:
    answer = client.post(path, json={"email": "ada@example.com", "password": PASSWORD})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"token", "user"}
    assert body["user"] == {
        "pk": ada["pk"],
        "username": "ada",
        "email": "ada@example.com",
        "has_devices": False,
        "is_local": False,
        "devices": [],
        "timezone": "UTC",
    }
    assert jwt.decode(body["token"], options={"verify_signature": False})["usr"] == "ada"
    assert not any(h in answer.headers for h in GRPC_HEADERS)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"email": "ada@example.com", "password": "wrong"}, 401),
        ({"email": "nobody@example.com", "password": PASSWORD}, 401),
        ({"email": "ada@example.com"}, 400),
        ({}, 400),
        ({"email": 5, "password": []}, 400),
    ],
)
def test_autopi_login_failures(client: httpx.Client, ada: dict, body: dict, status: int) -> None:
    answer = client.post("/auth/login/", json=body)
    assert answer.status_code == status
    assert set(answer.json()) == {"detail"}
    assert answer.json()["detail"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1,2", b"\xff"])
def test_malformed_json_is_a_400_with_a_message(client: httpx.Client, raw: bytes) -> None:
    answer = client.post("/auth/login/", content=raw, headers=JSON)
    assert answer.status_code == 400
    assert answer.json()["detail"]


def test_oversized_body_is_413(client: httpx.Client) -> None:
    huge = b'{"email": "' + b"a" * (9 * 1024 * 1024) + b'", "password": "x"}'
    answer = client.post("/auth/login/", content=huge, headers=JSON)
    assert answer.status_code == 413
    assert answer.json()["detail"]


def test_unknown_path_is_a_json_404(client: httpx.Client) -> None:
    answer = client.get("/no/such/path/")
    assert answer.status_code == 404
    assert answer.json()


def test_wrong_method_is_not_a_503(client: httpx.Client) -> None:
    answer = client.get("/auth/login/")
    assert answer.status_code in (404, 405)
    assert answer.json()


# --- Authorization: Bearer and APIToken ---------------------------------------------------


def test_bearer_token_authenticates(client: httpx.Client, ada: dict) -> None:
    token = autopi_login(client)
    answer = client.get("/auth/user/", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.json()["username"] == "ada"


@pytest.mark.parametrize("header", [None, "Bearer nope", "APIToken nope", "Token x", "Bearer"])
def test_bad_authorization_is_401(client: httpx.Client, ada: dict, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    answer = client.get("/auth/user/", headers=headers)
    assert answer.status_code == 401
    assert set(answer.json()) == {"detail"}


def test_api_token_created_used_and_revoked(client: httpx.Client, stack: Stack, ada: dict) -> None:
    token = autopi_login(client)
    created = client.post(
        "/auth/api_tokens/", json={"name": "script"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 200, created.text
    api = {"Authorization": f"APIToken {created.json()['token']}"}
    assert client.get("/auth/user/", headers=api).json()["username"] == "ada"
    deleted = client.delete(
        f"/auth/api_tokens/{created.json()['id']}/", headers={"Authorization": f"Bearer {token}"}
    )
    assert deleted.status_code == 200
    assert client.get("/auth/user/", headers=api).status_code == 401


def test_cli_api_token_with_expiry_in_the_past_is_refused(stack: Stack, ada: dict) -> None:
    result = stack.cli(
        "apitoken",
        "create",
        "--user",
        "ada",
        "--name",
        "old",
        "--expires",
        "2000-01-01T00:00:00Z",
        check=False,
    )
    assert result.returncode != 0
    assert "future" in result.stderr


def test_cli_api_token_works_through_the_gateway(
    client: httpx.Client, stack: Stack, ada: dict
) -> None:
    created = stack.cli_json("apitoken", "create", "--user", "ada", "--name", "cli")
    answer = client.get("/auth/user/", headers={"Authorization": f"APIToken {created['token']}"})
    assert answer.status_code == 200


# --- Thinger: POST /oauth/token ---------------------------------------------------------


def test_thinger_password_grant(client: httpx.Client, ada: dict) -> None:
    answer = oauth(client, f"grant_type=password&username=ada&password={PASSWORD}")
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
    assert body["expires_in"] == 7200
    assert body["scope"] is None
    assert body["token_type"] == "bearer"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert set(claims) == {"exp", "iat", "usr"}


def test_thinger_bad_credentials(client: httpx.Client, ada: dict) -> None:
    answer = oauth(client, "grant_type=password&username=ada&password=wrong")
    assert answer.status_code == 401
    assert answer.json() == {"error": {"message": "invalid username or password"}}


def test_thinger_refresh_rotation_and_reuse(client: httpx.Client, ada: dict) -> None:
    first = oauth(client, f"grant_type=password&username=ada&password={PASSWORD}").json()
    second = oauth(client, f"grant_type=refresh_token&refresh_token={first['refresh_token']}")
    assert second.status_code == 200
    reused = oauth(client, f"grant_type=refresh_token&refresh_token={first['refresh_token']}")
    assert reused.status_code == 401
    assert reused.json() == {"error": {"message": "invalid refresh token"}}
    family = oauth(
        client, f"grant_type=refresh_token&refresh_token={second.json()['refresh_token']}"
    )
    assert family.status_code == 401


@pytest.mark.parametrize(
    "body", ["grant_type=client_credentials", "grant_type=", "username=ada", "%%%"]
)
def test_thinger_bad_grants_are_400(client: httpx.Client, body: str) -> None:
    answer = oauth(client, body)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"]


def test_thinger_access_token_in_the_query(client: httpx.Client, ada: dict) -> None:
    token = oauth(client, f"grant_type=password&username=ada&password={PASSWORD}").json()
    answer = client.get("/v1/users/ada/tokens", params={"authorization": token["access_token"]})
    assert answer.status_code == 200
    assert isinstance(answer.json(), list)


def test_thinger_user_token_lifecycle(client: httpx.Client, ada: dict) -> None:
    access = oauth(client, f"grant_type=password&username=ada&password={PASSWORD}").json()
    auth = {"Authorization": f"Bearer {access['access_token']}"}
    created = client.post(
        "/v1/users/ada/tokens",
        json={
            "token_name": "DoorAccess",
            "token_permissions": [{"device": "door", "resources": ["open"], "actions": ["call"]}],
        },
        headers=auth,
    )
    assert created.status_code == 200, created.text
    assert set(created.json()) == {"id", "name", "token"}
    user_token = created.json()["token"]
    listed = client.get("/v1/users/ada/tokens", headers=auth).json()
    assert [t["name"] for t in listed] == ["DoorAccess"]
    assert "token" not in listed[0]
    assert client.get("/auth/user/", params={"authorization": user_token}).status_code == 200
    removed = client.delete(f"/v1/users/ada/tokens/{created.json()['id']}", headers=auth)
    assert removed.status_code == 200
    assert client.get("/auth/user/", params={"authorization": user_token}).status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"token_expiration": -5}, "token_expiration must be in the future"),
        (
            {"token_permissions": [{"device": None, "actions": ["read"]}]},
            'permissions[0].device is required: a device id, or "*" for every device',
        ),
        (
            {"token_permissions": [{"device": "*"}] * 10_000},
            "a token may carry at most 100 permissions",
        ),
        (
            {"token_permissions": [{"device": "door", "actions": ["fly"]}]},
            "permissions[0] has unknown actions ['fly']; use ['read', 'call', 'write']",
        ),
        # The audit's bodies: each was once accepted, [null] as a full-access token.
        ({"token_permissions": [None]}, "permissions[0] must be an object"),
        ({"token_permissions": {"device": "*"}}, "permissions must be a list"),
        (
            {"token_permissions": [{"device": "*", "extra": 1}]},
            "permissions[0] has unknown fields: ['extra']",
        ),
        (
            {"token_permissions": [{"device": "d1", "actions": "call"}]},
            "permissions[0].actions must be a list of strings",
        ),
        (
            {"token_permissions": [{"device": "d1", "actions": ["call", None]}]},
            "permissions[0].actions must be a list of strings",
        ),
        (
            {"token_permissions": [{"device": "d1", "resources": None}]},
            "permissions[0].resources must be a list of strings",
        ),
        ({"token_permissions": None}, "permissions must be a list"),
        (
            {"token_permissions": []},
            "permissions must list at least one permission; leave them out for full access",
        ),
        ({"token_name": "t\u0000x"}, "name must not contain control characters"),
    ],
)
def test_thinger_user_tokens_of_a_bad_shape_are_400(
    client: httpx.Client, ada: dict, body: dict, message: str
) -> None:
    """Once a token that never expired, one for every device, a 10,000-grant token, and (from
    a null grant the transcoder dropped) a full-access one."""
    access = oauth(client, f"grant_type=password&username=ada&password={PASSWORD}").json()
    auth = {"Authorization": f"Bearer {access['access_token']}"}
    answer = client.post("/v1/users/ada/tokens", json={"token_name": "x", **body}, headers=auth)
    assert answer.status_code == 400
    assert answer.json() == {"error": {"message": message}}
    assert client.get("/v1/users/ada/tokens", headers=auth).json() == []


def test_another_users_path_is_refused(client: httpx.Client, ada: dict, bob: dict) -> None:
    token = autopi_login(client, "bob@example.com")
    answer = client.get("/v1/users/ada/tokens", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.json()["error"]["message"]


# --- Datacooee: organisation headers ------------------------------------------------------


def test_datacooee_organisation_headers(client: httpx.Client, stack: Stack) -> None:
    org = stack.cli_json("org", "create", "--name", "acme")
    sensor = stack.cli_json("input", "create", "--org", org["id"], "--name", "temp", "--unit", "C")
    headers = {"ORGANIZATION-ID": org["id"], "ORGANIZATION-API-KEY": org["api_key"]}
    answer = client.get("/api/external/v1/inputs", headers=headers)
    assert answer.status_code == 200
    assert answer.json()["inputs"] == [sensor]
    bad = client.get(
        "/api/external/v1/inputs", headers={**headers, "ORGANIZATION-API-KEY": "wrong"}
    )
    assert bad.status_code == 401
    assert bad.json()["errors"][0]["status"] == "401"


# --- Throttling ---------------------------------------------------------------------------


def test_repeated_failures_answer_429_with_retry_after(client: httpx.Client, stack: Stack) -> None:
    stack.cli_json("user", "create", "--email", "eve@example.com", "--password", PASSWORD)
    for _ in range(5):
        wrong = client.post("/auth/login/", json={"email": "eve@example.com", "password": "x"})
        assert wrong.status_code == 401
    locked = client.post("/auth/login/", json={"email": "eve@example.com", "password": PASSWORD})
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert locked.json()["detail"]
    thinger = oauth(client, f"grant_type=password&username=eve@example.com&password={PASSWORD}")
    assert thinger.status_code == 429
    assert thinger.json()["error"]["message"]


def test_thinger_refresh_token_revoked_by_form(client: httpx.Client, ada: dict) -> None:
    pair = oauth(client, f"grant_type=password&username=ada&password={PASSWORD}").json()
    revoked = client.post("/oauth/revoke", content=f"token={pair['refresh_token']}", headers=FORM)
    assert revoked.status_code == 200
    assert revoked.json() == {}
    again = oauth(client, f"grant_type=refresh_token&refresh_token={pair['refresh_token']}")
    assert again.status_code == 401
    assert again.json() == {"error": {"message": "invalid refresh token"}}
    missing = client.post("/oauth/revoke", content="", headers=FORM)
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "token is required"


def test_expired_access_token_is_401(client: httpx.Client, stack: Stack, ada: dict) -> None:
    """A token signed with the stack's own key, but issued three hours ago."""
    signer = TokenSigner(KeyFile(stack.workdir / "var" / "jwt-keys.json"))  # the default place
    issued = datetime.now(UTC) - timedelta(hours=3)
    expired = signer.access_token("ada", issued)
    fresh = signer.access_token("ada", datetime.now(UTC))
    assert (
        client.get("/auth/user/", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    )
    answer = client.get("/auth/user/", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401
    assert answer.json() == {"detail": "token expired"}
    thinger = client.get("/v1/users/ada/tokens", params={"authorization": expired})
    assert thinger.json() == {"error": {"message": "token expired"}}


def test_api_token_stops_at_its_expiry(client: httpx.Client, stack: Stack, ada: dict) -> None:
    """A token whose expiry has passed is refused through the real stack, one still ahead is
    accepted. The expired one is created in the stack's database as of an hour ago, so no test
    waits for the real clock (the expiry itself is tested in-process with a ManualClock)."""
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    database = Database(stack.db_url)
    try:
        _row, expired = database.call(
            lambda s: tokens.create_api_token(
                s, ada["pk"], "brief", an_hour_ago + timedelta(seconds=8), now=an_hour_ago
            )
        )
    finally:
        database.dispose()
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ahead = stack.cli_json(
        "apitoken", "create", "--user", "ada", "--name", "long", "--expires", in_an_hour
    )
    live = client.get("/auth/user/", headers={"Authorization": f"APIToken {ahead['token']}"})
    assert live.status_code == 200
    answer = client.get("/auth/user/", headers={"Authorization": f"APIToken {expired}"})
    assert (answer.status_code, answer.json()) == (401, {"detail": "invalid api token"})


# --- What an adversarial probe found (issue 5, item 10), through the real stack -----------


def test_a_query_parameter_does_not_choose_whose_path_it_is(
    client: httpx.Client, ada: dict, bob: dict
) -> None:
    """`?user_id=bob` on ada's path: the path wins, so bob cannot read ada's path as his."""
    bob_token = autopi_login(client, "bob@example.com")
    answer = client.get(
        "/v1/users/ada/tokens",
        params={"user_id": "bob"},
        headers={"Authorization": f"Bearer {bob_token}"},
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["message"]


def test_a_query_parameter_does_not_choose_which_token_is_deleted(
    client: httpx.Client, ada: dict
) -> None:
    bearer = {"Authorization": f"Bearer {autopi_login(client)}"}
    created = client.post("/auth/api_tokens/", json={"name": "kept"}, headers=bearer).json()
    answer = client.delete(f"/auth/api_tokens/999999/?id={created['id']}", headers=bearer)
    assert answer.status_code == 404
    api = {"Authorization": f"APIToken {created['token']}"}
    assert client.get("/auth/user/", headers=api).status_code == 200


@pytest.mark.parametrize(
    "header", [("x-foo-bin", "a"), ("grpc-timeout", "1S"), ("grpc-encoding", "snappy")]
)
def test_grpc_reserved_headers_do_not_break_a_rest_call(
    client: httpx.Client, header: tuple[str, str]
) -> None:
    """Answered as the call deserves (401 without credentials), never a 500."""
    answer = client.get("/auth/user/", headers=[header])
    assert answer.status_code == 401
    assert answer.json() == {"detail": "authentication credentials were not provided"}


def test_a_content_type_near_grpc_is_checked_as_rest(client: httpx.Client) -> None:
    answer = client.get("/v1/users/%FF/tokens", headers={"content-type": "application/grpc ;x"})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {"message": "invalid request: the path or query is not valid UTF-8"}
    }


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        ({"x-big": "a" * (20 * 1024)}, "/auth/user/", 431),
        ({}, "/auth/user/?x=" + "a" * 9000, 414),
    ],
)
def test_oversized_requests_are_refused_at_the_gateway(
    client: httpx.Client, headers: dict[str, str], path: str, status: int
) -> None:
    """Not the server's metadata limit (a 429 that clients retry)."""
    answer = client.get(path, headers=headers)
    assert answer.status_code == status
    assert "retry-after" not in answer.headers


def test_a_request_just_under_the_gateway_limits_reaches_the_server(client: httpx.Client) -> None:
    """The server's metadata limit is above the gateway's (16 KiB for the request line and
    headers, the path counted again as x-envoy-original-path): what the gateway lets
    through is answered by the server (here 401), never refused as RESOURCE_EXHAUSTED."""
    answer = client.get("/auth/user/?x=" + "a" * 8000, headers={"x-big": "a" * (7 * 1024)})
    assert answer.status_code == 401


# --- What the audit of main found: the path wins, whatever sets a field ---------------------


@pytest.mark.parametrize("name", ["i%64", "%69d", "%69%64"])
def test_an_encoded_query_name_does_not_choose_which_token_is_deleted(
    client: httpx.Client, bob: dict, name: str
) -> None:
    bearer = {"Authorization": f"Bearer {autopi_login(client, 'bob@example.com')}"}
    created = client.post("/auth/api_tokens/", json={"name": "kept"}, headers=bearer).json()
    answer = client.delete(f"/auth/api_tokens/999999/?{name}={created['id']}", headers=bearer)
    assert answer.status_code == 404
    assert answer.json() == {"detail": "api token 999999 not found"}
    api = {"Authorization": f"APIToken {created['token']}"}
    assert client.get("/auth/user/", headers=api).status_code == 200


def test_an_encoded_query_name_does_not_choose_whose_path_it_is(
    client: httpx.Client, ada: dict, bob: dict
) -> None:
    """`?user%5Fid=ada` on bob's path, sent by ada: the path says bob, so it is refused."""
    ada_token = autopi_login(client)
    answer = client.get(
        "/v1/users/bob/tokens?user%5Fid=ada", headers={"Authorization": f"Bearer {ada_token}"}
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["message"]


def test_the_body_does_not_choose_whose_path_it_is(
    client: httpx.Client, ada: dict, bob: dict
) -> None:
    """`{"user_id": ...}` in the body of POST /v1/users/<user>/tokens: the path wins."""
    ada_auth = {"Authorization": f"Bearer {autopi_login(client)}"}
    own = client.post(
        "/v1/users/ada/tokens", json={"token_name": "path-wins", "user_id": "bob"}, headers=ada_auth
    )
    assert own.status_code == 200, own.text
    listed = client.get("/v1/users/ada/tokens", headers=ada_auth).json()
    assert "path-wins" in [token["name"] for token in listed]
    client.delete(f"/v1/users/ada/tokens/{own.json()['id']}", headers=ada_auth)
    bob_auth = {"Authorization": f"Bearer {autopi_login(client, 'bob@example.com')}"}
    other = client.post(
        "/v1/users/ada/tokens", json={"token_name": "stolen", "user_id": "bob"}, headers=bob_auth
    )
    assert other.status_code == 401
    assert "stolen" not in [
        token["name"] for token in client.get("/v1/users/ada/tokens", headers=ada_auth).json()
    ]
