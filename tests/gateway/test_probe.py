"""What an adversarial probe of the gateway found (issue 5, item 10), each reproduced
through the real Envoy in front of the fake upstream."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.config import GRPC_OVER_HTTP1_MESSAGE
from gateway.local_replies import MESSAGES
from tests.gateway.conftest import RunningGateway, make_spec, start_gateway
from tests.support import LoopThread

pytestmark = pytest.mark.integration

#: Small bounds, so that the timeout tests take seconds.
BOUND_S = 1.0


@pytest.mark.parametrize("content_type", ["application/grpc ;x", "application/grpc\t;x"])
def test_content_type_near_grpc_gets_the_rest_checks(
    client: httpx.Client, content_type: str
) -> None:
    """Routed to the transcoder, so filtered as REST too: one classification of gRPC."""
    response = client.get("/v1/users/%FF/tokens", headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": "invalid request: the path or query is not valid UTF-8"}
    }
    moved = client.get("/auth/user?authorization=abc", headers={"content-type": content_type})
    assert moved.json()["username"] == "Bearer abc"


@pytest.mark.parametrize(
    "header",
    [("x-foo-bin", "a"), ("grpc-timeout", "1S"), ("grpc-encoding", "snappy"), ("te", "x")],
)
def test_headers_grpc_reserves_are_dropped_from_rest(
    client: httpx.Client, header: tuple[str, str]
) -> None:
    response = client.get("/auth/user", headers=[header])
    assert response.status_code == 200, response.text
    assert response.json()["username"] == ""


def test_a_query_parameter_never_changes_a_path_bound_field(client: httpx.Client) -> None:
    """The path wins: `?id=11` does not turn DELETE /auth/api_tokens/5 into token 11."""
    response = client.delete("/auth/api_tokens/5/?id=11")
    assert response.status_code == 404
    assert response.json() == {"detail": "api token 5 not found"}


def test_oversized_headers_are_431_not_a_retryable_429(client: httpx.Client) -> None:
    response = client.get("/auth/user", headers={"x-big": "a" * (20 * 1024)})
    assert response.status_code == 431
    assert "retry-after" not in response.headers


def test_headers_under_the_limit_reach_the_server(client: httpx.Client) -> None:
    response = client.get("/auth/user", headers={"x-big": "a" * (12 * 1024)})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/auth/user?x=" + "a" * 9000, {"detail": "request URI is too long (limit 8192 bytes)"}),
        (
            "/v1/users/" + "a" * 9000,
            {"error": {"message": "request URI is too long (limit 8192 bytes)"}},
        ),
    ],
)
def test_oversized_uri_is_414(client: httpx.Client, path: str, expected: object) -> None:
    response = client.get(path)
    assert response.status_code == 414
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected


@pytest.fixture(scope="module")
def bounded(
    loop_thread: LoopThread,
    upstream_port: int,
    demo_image: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    spec = make_spec(
        upstream_port,
        demo_image,
        request_headers_timeout_s=BOUND_S,
        request_timeout_s=BOUND_S,
        rest_idle_timeout_s=BOUND_S,
        unary_timeout_s=BOUND_S,
    )
    running = start_gateway(loop_thread, spec, tmp_path_factory.mktemp("bounded"))
    yield running
    loop_thread.run(running.envoy.stop(5))


def _held_for(gateway: RunningGateway, *parts: bytes, pause: float = 0.0) -> tuple[float, bytes]:
    """Send `parts` (pausing between them), then read until Envoy answers or closes.

    Returns how long the connection stayed open after the first part, and the answer.
    """
    with socket.create_connection(("127.0.0.1", gateway.envoy.spec.listen_port)) as sock:
        sock.settimeout(0.2)
        start = time.monotonic()
        answer = b""
        for part in parts:
            try:
                sock.sendall(part)
            except OSError:
                break
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and not answer:
                try:
                    answer = sock.recv(4096)
                except TimeoutError:
                    continue
            if answer:
                break
        while not answer and time.monotonic() - start < 20:
            try:
                answer = sock.recv(4096) or b"closed"
            except TimeoutError:
                continue
            except OSError:
                answer = b"closed"
        return time.monotonic() - start, answer


REQUEST_LINE = b"POST /auth/login/ HTTP/1.1\r\n"
HEADERS = b"Host: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n"


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param((REQUEST_LINE,), id="request line alone"),
        pytest.param((REQUEST_LINE + b"Host: x\r\n",), id="half the headers"),
        pytest.param((REQUEST_LINE + HEADERS + b"\r\n" + b'{"email": ',), id="half a body"),
    ],
)
def test_a_stalled_request_is_cut(bounded: RunningGateway, parts: tuple[bytes, ...]) -> None:
    held, answer = _held_for(bounded, *parts)
    assert held < 10 * BOUND_S
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"closed", answer


def test_a_trickled_body_is_cut(bounded: RunningGateway) -> None:
    """One byte at a time, each within the idle bound: the whole-exchange bound ends it."""
    trickle = [REQUEST_LINE + HEADERS + b"\r\n{"] + [b" "] * 100
    held, answer = _held_for(bounded, *trickle, pause=BOUND_S / 3)
    assert held < 10 * BOUND_S
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert answer.endswith(b'{"detail":"request timeout: the request was not received in time"}')


def test_a_native_grpc_stream_outlives_every_rest_bound(bounded: RunningGateway) -> None:
    """Device links are long-lived bidi streams on the same port: no bound cuts them."""
    with grpc.insecure_channel(bounded.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        sent: list[reflection_pb2.ServerReflectionRequest] = []
        ask = reflection_pb2.ServerReflectionRequest(list_services="")

        def requests() -> Iterator[reflection_pb2.ServerReflectionRequest]:
            sent.append(ask)
            yield ask
            # Twice as long as the longest of the headers, request, idle and unary bounds.
            time.sleep(2 * BOUND_S)
            sent.append(ask)
            yield ask

        answers = list(stub.ServerReflectionInfo(requests(), timeout=30))
    assert len(answers) == 2
    assert all(answer.list_services_response.service for answer in answers)


# --- What the audit of main found (N1, N6, item 5's bypass, item 12's shapes) -------------

#: Native gRPC is exactly what Envoy's transcoder takes for it (lower case); any other
#: spelling is REST to the transcoder, so it must be REST to the route and the filter too.
NOT_QUITE_GRPC = [
    "application/GRPC",
    "Application/grpc",
    "APPLICATION/GRPC+proto",
    "application/grpc;x",
]


def _internal_headers(response: httpx.Response) -> list[str]:
    return [
        name
        for name in response.headers
        if name.startswith(("grpc-", "x-thingwire")) or name == "x-http-status"
    ]


@pytest.mark.parametrize("content_type", NOT_QUITE_GRPC)
def test_a_grpc_content_type_in_another_case_is_rest(
    client: httpx.Client, content_type: str
) -> None:
    """No gRPC or internal header reaches a REST client; the error body is the family's."""
    ok = client.get("/auth/user", headers={"content-type": content_type})
    assert ok.status_code == 200, ok.text
    assert _internal_headers(ok) == []
    failed = client.delete("/auth/api_tokens/5", headers={"content-type": content_type})
    assert (failed.status_code, failed.json()) == (404, {"detail": "api token 5 not found"})
    assert _internal_headers(failed) == []


@pytest.mark.parametrize("content_type", NOT_QUITE_GRPC)
def test_a_grpc_content_type_in_another_case_gets_the_rest_checks(
    client: httpx.Client, content_type: str
) -> None:
    """Reserved headers are dropped (no 500), an over-long URI is a 414."""
    dropped = client.get(
        "/auth/user", headers={"content-type": content_type, "x-foo-bin": "a", "grpc-timeout": "0n"}
    )
    assert dropped.status_code == 200, dropped.text
    long_query = client.get("/auth/user?x=" + "a" * 10_000, headers={"content-type": content_type})
    assert long_query.status_code == 414
    assert long_query.json() == {"detail": "request URI is too long (limit 8192 bytes)"}
    moved = client.get("/auth/user?authorization=abc", headers={"content-type": content_type})
    assert moved.json()["username"] == "Bearer abc"
    big = client.post(
        "/auth/login/", content=b" " * (9 * 1024 * 1024), headers={"content-type": content_type}
    )
    assert big.status_code == 413


@pytest.mark.parametrize("content_type", NOT_QUITE_GRPC)
def test_a_trickled_body_in_another_case_is_cut(bounded: RunningGateway, content_type: str) -> None:
    headers = HEADERS.replace(b"application/json", content_type.encode())
    trickle = [REQUEST_LINE + headers + b"\r\n{"] + [b" "] * 100
    held, answer = _held_for(bounded, *trickle, pause=BOUND_S / 3)
    assert held < 10 * BOUND_S
    assert answer.startswith(b"HTTP/1.1 408"), answer


@pytest.mark.parametrize(
    "content_type", ["application/grpc", "application/grpc+json", "application/grpc+proto;x"]
)
def test_native_grpc_over_http1_does_not_leak_envoy_internals(
    client: httpx.Client, content_type: str
) -> None:
    """gRPC needs HTTP/2. Over HTTP/1 the gateway refuses a gRPC content type with a 415
    in the path's family shape: no grpc-* header, no 200, none of Envoy's own text
    ("upstream connect error or disconnect/reset before headers")."""
    for answer, body in (
        (
            client.post("/auth/login/", content=b"", headers={"content-type": content_type}),
            {"detail": GRPC_OVER_HTTP1_MESSAGE},
        ),
        (
            client.post(
                "/v1/users/ada/tokens", content=b"", headers={"content-type": content_type}
            ),
            {"error": {"message": GRPC_OVER_HTTP1_MESSAGE}},
        ),
    ):
        assert "upstream" not in str(answer.headers) + answer.text
        assert answer.status_code == 415
        assert answer.json() == body
        assert [name for name in answer.headers if name.startswith("grpc-")] == []
        assert [name for name in answer.headers if name.startswith("x-thingwire")] == []


def test_envoys_replies_to_native_grpc_carry_our_message(down_gateway: RunningGateway) -> None:
    """The server is down: UNAVAILABLE with the gateway's text, not Envoy's."""
    with grpc.insecure_channel(down_gateway.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as failure:
            list(stub.ServerReflectionInfo(iter([ask]), timeout=10))
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert failure.value.details() == MESSAGES[503]


@pytest.mark.parametrize("query", ["?i%64=11", "?%69d=11", "?%69%64=11", "?id=11"])
def test_an_encoded_query_name_never_changes_a_path_bound_field(
    client: httpx.Client, query: str
) -> None:
    """However the name is spelt, the path says which token is deleted."""
    response = client.delete(f"/auth/api_tokens/5/{query}")
    assert response.json() == {"detail": "api token 5 not found"}


def _raw(gateway: RunningGateway, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.envoy.spec.listen_port)) as sock:
        sock.settimeout(5)
        sock.sendall(request)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                head, _, body = answer.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    break
        return answer


THINGER_400 = {"error": {"message": "bad request: the request is malformed"}}
DATACOOEE_400 = {
    "errors": [
        {"status": "400", "title": "Bad Request", "detail": "bad request: the request is malformed"}
    ]
}
BAD_CHUNK = b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"


def _body(answer: bytes) -> object:
    return json.loads(answer.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/users/ada/tokens", THINGER_400),
        ("/api/external/v1/inputs", DATACOOEE_400),
        ("/auth/login/", {"detail": "bad request: the request is malformed"}),
    ],
)
def test_a_codec_400_after_the_headers_has_the_family_of_its_path(
    gateway: RunningGateway, path: str, expected: object
) -> None:
    """Once the request line and headers are complete, Envoy knows the path."""
    answer = _raw(gateway, b"POST " + path.encode() + BAD_CHUNK)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert _body(answer) == expected


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        pytest.param(
            b"GET /v1/users/ada/tokens HTTP/1.1\r\nHost: x\r\nX-Big: "
            + b"a" * 20_000
            + b"\r\n\r\n",
            431,
            "request headers are too large",
            id="431",
        ),
        pytest.param(
            b"GET /v1/users/ada/tokens HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
            400,
            "bad request: the request is malformed",
            id="bad header name",
        ),
        pytest.param(
            b"GET /api/external/v1/inputs HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
            400,
            "bad request: the request is malformed",
            id="NUL in a header",
        ),
        pytest.param(
            b"FOO /v1/users/ada/tokens HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "bad request: the request is malformed",
            id="method FOO",
        ),
        pytest.param(
            b"GET /v1/users/ada/tokens HTTP/9.9\r\nHost: x\r\n\r\n",
            426,
            "Upgrade Required",
            id="HTTP/9.9",
        ),
    ],
)
def test_a_reply_before_the_headers_are_complete_has_the_default_family(
    gateway: RunningGateway, request_bytes: bytes, status: int, message: str
) -> None:
    """Envoy's HTTP/1 codec sets the path only once the headers are complete, so a
    refusal before that cannot follow it: the gateway's default family (see
    docs/architecture.md, "How an error reaches a REST client")."""
    answer = _raw(gateway, request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer[:200]
    assert _body(answer) == {"detail": message}


def test_a_stalled_body_on_a_thinger_path_is_a_thinger_408(bounded: RunningGateway) -> None:
    request = b"POST /v1/users/ada/tokens HTTP/1.1\r\n" + HEADERS + b"\r\n" + b'{"token_name": '
    held, answer = _held_for(bounded, request)
    assert held < 10 * BOUND_S
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert answer.endswith(
        b'{"error":{"message":"request timeout: the request was not received in time"}}'
    )
