"""Whatever a client sends, the gateway answers with a status below 500 and, on error, with
a JSON body in the family's shape: no 5xx, no text error, no crash, no hang.

Property-based (hypothesis, derandomized so CI runs the same cases every time), against the
real stack of this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.stack import Stack

pytestmark = pytest.mark.integration

PATHS = [
    "/auth/login/",
    "/auth/login",
    "/auth/user/",
    "/auth/api_tokens/",
    "/auth/api_tokens/1/",
    "/oauth/token",
    "/oauth/revoke",
    "/v1/users/ada/tokens",
    "/v1/users/ada/tokens/abc",
    "/api/external/v1/inputs",
    "/",
    "/v2/users/ada/devices/x/y",
]
CONTENT_TYPES = [
    # Native gRPC's content types, which HTTP/1.1 cannot carry: refused like any other.
    "application/grpc",
    "application/grpc+proto",
    "application/grpc-web",
    "application/grpc-web+json",
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/octet-stream",
    "application/vnd.api+json",
    "multipart/form-data; boundary=x",
]
#: Path prefixes of the Thinger API; Datacooee's; every other path is the AutoPi cloud's.
THINGER_PREFIXES = ("/v1/", "/v2/", "/oauth/")
DATACOOEE_PREFIX = "/api/external/"

# Documented paths, and Thinger paths whose user segment is arbitrary percent-encoded bytes.
paths = st.sampled_from(PATHS) | st.binary(max_size=8).map(
    lambda segment: f"/v1/users/{quote(segment, safe='')}/tokens"
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(
            ["email", "password", "grant_type", "username", "refresh_token", "token", "name", "in"]
        ),
        json_values,
        max_size=4,
    ).map(lambda v: json.dumps(v).encode()),
)
queries = st.dictionaries(
    st.sampled_from(["authorization", "page_size", "page_token", "id", "x"]),
    st.text(max_size=12),
    max_size=3,
)
authorizations = st.one_of(
    st.none(),
    st.sampled_from(["Bearer", "Bearer x.y.z", "APIToken", "Basic Zm9vOmJhcg=="]),
    # HTTP clients refuse header values with surrounding spaces, so none are generated.
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
        str.strip
    ),
)


def assert_family_error(path: str, status: int, payload: object) -> None:
    """The error body is exactly the documented shape of the family that owns `path`."""
    if path.startswith(THINGER_PREFIXES):
        assert isinstance(payload, dict), payload
        assert list(payload) == ["error"], payload
        assert list(payload["error"]) == ["message"], payload
        assert isinstance(payload["error"]["message"], str), payload
    elif path.startswith(DATACOOEE_PREFIX):
        assert isinstance(payload, dict), payload
        assert list(payload) == ["errors"], payload
        (error,) = payload["errors"]
        assert list(error) == ["status", "title", "detail"], payload
        assert error["status"] == str(status), payload
        assert isinstance(error["title"], str), payload
        assert isinstance(error["detail"], str), payload
    else:
        assert isinstance(payload, dict), payload
        assert list(payload) == ["detail"], payload
        assert isinstance(payload["detail"], str), payload


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.http() as http:
        yield http


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=paths,
    content_type=st.sampled_from(CONTENT_TYPES),
    body=bodies,
    query=queries,
    authorization=authorizations,
)
def test_any_request_gets_a_clean_answer(
    client: httpx.Client,
    method: str,
    path: str,
    content_type: str,
    body: bytes,
    query: dict[str, str],
    authorization: str | None,
) -> None:
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = authorization
    send_body = method in ("POST", "PUT", "PATCH")
    answer = client.request(
        method, path, params=query, headers=headers, content=body if send_body else None
    )
    assert answer.status_code < 500, (answer.status_code, answer.text)
    if answer.status_code >= 400:
        assert answer.headers["content-type"].startswith("application/json")
        assert_family_error(path, answer.status_code, answer.json())
    assert not any(h.startswith("grpc-") for h in answer.headers)
