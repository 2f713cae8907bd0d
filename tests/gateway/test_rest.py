"""REST through the real Envoy in front of the fake upstream: paths, bodies, statuses, errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import RunningGateway
from tests.gateway.fake_upstream import (
    AWKWARD_MESSAGE,
    BAD_LOGIN,
    BROKEN_TOKEN_ID,
    PASSWORD,
    SLOW_TOKEN_ID,
    THROTTLED_EMAIL,
)

pytestmark = pytest.mark.integration

GRPC_HEADERS = ("grpc-status", "grpc-message", "grpc-accept-encoding", "grpc-encoding")


def assert_no_grpc_headers(response: httpx.Response) -> None:
    leaked = [name for name in GRPC_HEADERS if name in response.headers]
    assert leaked == [], f"{leaked} leaked into a REST answer"
    assert "x-http-status" not in response.headers


def assert_json_error(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert_no_grpc_headers(response)
    return response.json()


@pytest.mark.parametrize("path", ["/auth/login/", "/auth/login"])
def test_login_with_and_without_trailing_slash(client: httpx.Client, path: str) -> None:
    response = client.post(path, json={"email": "ann@example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["token"] == "tok-ann@example.com"
    assert_no_grpc_headers(response)


def test_field_names_are_preserved_and_zero_values_printed(client: httpx.Client) -> None:
    response = client.post("/auth/login/", json={"email": "a@b.c", "password": PASSWORD})
    user = response.json()["user"]
    assert user["has_devices"] is False
    assert user["is_local"] is False
    assert user["username"] == ""
    assert user["devices"] == []
    assert "hasDevices" not in user


def test_form_post_reaches_the_server_raw(client: httpx.Client) -> None:
    form = {"grant_type": "password", "username": "jt", "password": PASSWORD}
    response = client.post("/oauth/token", data=form)
    assert response.status_code == 200
    body = response.json()
    assert body["access_token"] == "access-jt"
    assert body["refresh_token"] == "application/x-www-form-urlencoded"
    assert body["scope"] is None
    assert body["token_type"] == "bearer"


def test_thinger_401(client: httpx.Client) -> None:
    form = {"grant_type": "password", "username": "jt", "password": "wrong"}
    body = assert_json_error(client.post("/oauth/token", data=form), 401)
    assert body == {"error": {"message": BAD_LOGIN}}


def test_autopi_cloud_401(client: httpx.Client) -> None:
    response = client.post("/auth/login/", json={"email": "a@b.c", "password": "wrong"})
    assert assert_json_error(response, 401) == {"detail": BAD_LOGIN}


def test_datacooee_401_is_json_api(client: httpx.Client) -> None:
    body = assert_json_error(client.get("/api/external/v1/inputs"), 401)
    assert body == {
        "errors": [
            {"status": "401", "title": "Unauthorized", "detail": "organization headers missing"}
        ]
    }


def test_unknown_path_is_a_json_404(client: httpx.Client) -> None:
    assert assert_json_error(client.get("/no/such/thing"), 404) == {
        "detail": "no such endpoint: GET /no/such/thing"
    }


def test_unknown_thinger_path_is_a_thinger_404(client: httpx.Client) -> None:
    body = assert_json_error(client.get("/v1/users/jt/nothing?authorization=abc"), 404)
    assert body == {"error": {"message": "no such endpoint: GET /v1/users/jt/nothing"}}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_a_json_404_never_503(client: httpx.Client, method: str) -> None:
    response = client.request(method, "/auth/login/", json={})
    body = assert_json_error(response, 404)
    assert body == {"detail": f"no such endpoint: {method} /auth/login/"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"email": ', "request body is not valid JSON: "),
        (b'{"email" "x"}', "request body is not valid JSON: "),
        (b"{}trailing", "request body is not valid JSON: "),
        (b"[1, 2]", "invalid request: the body must be a JSON object"),
        (b'{"email": {"a": 1}}', "invalid request: "),
    ],
)
def test_malformed_json_is_a_json_400(client: httpx.Client, raw: bytes, message: str) -> None:
    headers = {"content-type": "application/json"}
    body = assert_json_error(client.post("/auth/login/", content=raw, headers=headers), 400)
    assert body["detail"].startswith(message)


def test_wrong_query_parameter_type_is_a_json_400(client: httpx.Client) -> None:
    body = assert_json_error(client.get("/api/external/v1/inputs?page_size=many"), 400)
    assert "page_size" in body["errors"][0]["detail"]
    assert body["errors"][0]["status"] == "400"


@pytest.mark.parametrize(
    ("path", "content_type", "expected"),
    [
        (
            "/oauth/token",
            "application/x-www-form-urlencoded",
            {"error": {"message": "request body is too large (limit 8388608 bytes)"}},
        ),
        (
            "/auth/login/",
            "application/json",
            {"detail": "request body is too large (limit 8388608 bytes)"},
        ),
    ],
)
def test_body_over_the_limit_is_a_json_413(
    client: httpx.Client, path: str, content_type: str, expected: object
) -> None:
    raw = b'{"email": "' + b"x" * (8 * 1024 * 1024 + 1) + b'"}'
    response = client.post(path, content=raw, headers={"content-type": content_type})
    assert assert_json_error(response, 413) == expected


def test_body_under_the_limit_passes(client: httpx.Client) -> None:
    email = "x" * (6 * 1024 * 1024)
    response = client.post("/auth/login/", json={"email": email, "password": "wrong"})
    assert assert_json_error(response, 401) == {"detail": BAD_LOGIN}


def test_initial_metadata_sets_201(client: httpx.Client) -> None:
    response = client.post("/auth/api_tokens/", json={"name": "ci"})
    assert response.status_code == 201
    body = response.json()
    assert (str(body["id"]), body["name"], body["token"]) == ("7", "ci", "s3cret")
    assert_no_grpc_headers(response)


def test_resource_exhausted_is_429_with_retry_after(client: httpx.Client) -> None:
    response = client.post("/auth/login/", json={"email": THROTTLED_EMAIL, "password": "x"})
    assert assert_json_error(response, 429) == {"detail": "too many failed logins"}
    assert response.headers["retry-after"] == "30"
    assert "x-retry-after" not in response.headers


def test_not_found_from_the_server(client: httpx.Client) -> None:
    body = assert_json_error(client.delete("/auth/api_tokens/5"), 404)
    assert body == {"detail": "api token 5 not found"}


def test_messages_are_escaped_into_valid_json(client: httpx.Client) -> None:
    response = client.post("/auth/api_tokens", json={"name": ""})
    body = assert_json_error(response, 400)
    assert body == {"detail": AWKWARD_MESSAGE}
    assert json.loads(response.content) == body


def test_slow_server_is_a_json_504(client: httpx.Client) -> None:
    response = client.delete(f"/auth/api_tokens/{SLOW_TOKEN_ID}")
    body = assert_json_error(response, 504)
    assert body == {"detail": "gateway timeout: the thingwire server did not answer in time"}


def test_authorization_query_parameter_becomes_the_header(client: httpx.Client) -> None:
    response = client.get("/auth/user?foo=1&authorization=abc.def&bar=two%20words")
    user = response.json()
    assert user["username"] == "Bearer abc.def"
    # The server sees the path without the token, the other parameters intact.
    assert user["timezone"] == "/auth/user?foo=1&bar=two%20words"


def test_authorization_query_parameter_keeps_its_scheme(client: httpx.Client) -> None:
    response = client.get("/auth/user?authorization=APIToken%20xyz")
    assert response.json()["username"] == "APIToken xyz"
    assert response.json()["timezone"] == "/auth/user"


def test_authorization_header_wins_over_the_query(client: httpx.Client) -> None:
    response = client.get("/auth/user?authorization=abc", headers={"Authorization": "Bearer h"})
    assert response.json()["username"] == "Bearer h"
    assert response.json()["timezone"] == "/auth/user"


def test_other_query_parameters_are_still_transcoded(client: httpx.Client) -> None:
    response = client.get(
        "/api/external/v1/inputs?authorization=tok&page_size=5",
        headers={"ORGANIZATION-ID": "org1"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["inputs"][0]["name"] == "Bearer tok"
    assert body["next_page_token"] == "5"


def test_unknown_query_parameters_are_ignored(client: httpx.Client) -> None:
    response = client.post("/auth/login/?utm=x", json={"email": "a@b.c", "password": PASSWORD})
    assert response.status_code == 200


def test_unimplemented_rpc_keeps_the_family_shape(client: httpx.Client) -> None:
    body = assert_json_error(client.get("/v1/users/jt/tokens"), 501)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message"}


def test_upstream_down_is_a_json_503(down_gateway: RunningGateway) -> None:
    with httpx.Client(base_url=down_gateway.base_url, timeout=15) as http:
        response = http.post("/auth/login/", json={"email": "a@b.c", "password": PASSWORD})
        body = assert_json_error(response, 503)
        assert body == {"detail": "service unavailable: the thingwire server cannot be reached"}
        thinger = http.post("/oauth/token", data={"grant_type": "password"})
        assert assert_json_error(thinger, 503) == {
            "error": {"message": "service unavailable: the thingwire server cannot be reached"}
        }


def test_empty_authorization_query_parameter_is_dropped(client: httpx.Client) -> None:
    response = client.get("/auth/user?authorization=&x=1")
    assert response.json()["username"] == ""
    assert response.json()["timezone"] == "/auth/user?x=1"


@pytest.mark.parametrize("value", ["%1F", "abc%00def", "%7F", "tok%0D%0AX-Injected:%201"])
def test_authorization_query_with_control_characters_is_dropped(
    client: httpx.Client, value: str
) -> None:
    """It could not travel as gRPC metadata (a 503): the call goes on unauthenticated."""
    response = client.get(f"/auth/user?authorization={value}&x=1")
    assert response.status_code == 200
    assert response.json()["username"] == ""
    assert response.json()["timezone"] == "/auth/user?x=1"


def test_a_request_envoy_cannot_parse_is_not_called_bad_json(client: httpx.Client) -> None:
    response = client.get("/auth/user", headers={"X-Other": "bad\x7fbyte"})
    body = assert_json_error(response, 400)
    assert body == {"detail": "bad request: the request is malformed"}


def test_grpc_web_is_treated_as_rest(client: httpx.Client) -> None:
    """Only application/grpc[+codec] is native gRPC; grpc-web gets the REST treatment."""
    response = client.get(
        "/auth/user?authorization=abc", headers={"content-type": "application/grpc-web"}
    )
    assert response.status_code == 200
    assert response.json()["username"] == "Bearer abc"
    assert not any(h.startswith("grpc-") for h in response.headers)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/v1/users/%ff/tokens",
            {"error": {"message": "invalid request: the path or query is not valid UTF-8"}},
        ),
        (
            "/auth/api_tokens?page_token=%ed%a0%80",
            {"detail": "invalid request: the path or query is not valid UTF-8"},
        ),
    ],
)
def test_invalid_utf8_in_path_or_query_is_a_400(
    client: httpx.Client, path: str, expected: dict
) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert response.json() == expected


def test_internal_errors_do_not_leak_their_detail(client: httpx.Client) -> None:
    response = client.delete(f"/auth/api_tokens/{BROKEN_TOKEN_ID}")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert "sqlite3" not in response.text


def test_error_messages_keep_non_ascii_text_as_valid_json(client: httpx.Client) -> None:
    response = client.get("/auth/api_tokens", params={"page_size": "é"})
    assert response.status_code == 400
    assert "é" in response.json()["detail"]
