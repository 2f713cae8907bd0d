"""The REST error body of each API family, rendered by the server and copied by the gateway.

The server knows which API an rpc belongs to (the `thingwire.options.v1.api_family` method
option) and what went wrong, so it writes the documented JSON body itself and sends it, with
the HTTP status, as metadata of the failed call (`error_metadata`). The gateway copies the
body and the status into the REST answer without reading them (docs/architecture.md,
"How an error reaches a REST client").

Metadata values must be printable ASCII, so bodies are JSON with `\\uXXXX` escapes for
anything else: the same JSON value as the UTF-8 text, and valid UTF-8 by construction.
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from http import HTTPStatus
from typing import Any

import grpc
from thingwire.options.v1 import options_pb2

#: Initial or trailing metadata keys the gateway reads (and removes) on the way to a client.
ERROR_BODY_KEY = "x-thingwire-error-body"
HTTP_STATUS_KEY = "x-http-status"

#: The HTTP status of each gRPC code: Envoy's transcoder mapping, written once for the server.
HTTP_STATUS_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

#: Codes whose message may carry a server's internals; REST clients see INTERNAL_MESSAGE.
HIDDEN_CODES = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})
INTERNAL_MESSAGE = "internal error"

#: A message longer than this is cut, so that the body stays well inside header limits.
MAX_MESSAGE_CHARS = 2048

_SURROGATES = re.compile("[\ud800-\udfff]")

#: The API family of the rpc being served; set per call by `server.rest_interceptor`.
current_family: ContextVar[int] = ContextVar(
    "current_family", default=options_pb2.API_FAMILY_UNSPECIFIED
)


def reason(status: int) -> str:
    """The HTTP reason phrase of `status` (JSON:API's `title`), or "Error" if unknown."""
    if status == 499:
        return "Client Closed Request"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _json(value: object) -> str:
    """Compact, ASCII-only JSON: safe as a metadata value and as a UTF-8 body."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def error_document(family: int, status: int | None, message: str) -> dict[str, Any]:
    """The documented error document of `family` for an answer with HTTP `status`.

    The gateway renders its own replies from these documents too; it passes `status=None`
    when the status is only known there (JSON:API then gets Envoy's `%RESPONSE_CODE%`).
    """
    if family == options_pb2.API_FAMILY_THINGER:
        return {"error": {"message": message}}
    if family == options_pb2.API_FAMILY_DATACOOEE:
        title = "Error" if status is None else reason(status)
        code = "%RESPONSE_CODE%" if status is None else str(status)
        return {"errors": [{"status": code, "title": title, "detail": message}]}
    if family == options_pb2.API_FAMILY_LOCAL:
        return {"error": message}
    return {"detail": message}


def render_error_body(family: int, status: int, message: str) -> str:
    """The documented error body of `family` for an answer with HTTP `status`.

    An empty message becomes the reason phrase; lone surrogates (never valid text) become
    U+FFFD, so that the body is always valid UTF-8 JSON.
    """
    text = _SURROGATES.sub("\ufffd", message[:MAX_MESSAGE_CHARS]) or reason(status)
    return _json(error_document(family, status, text))


def error_metadata(
    family: int, code: grpc.StatusCode, message: str, status: int | None = None
) -> tuple[tuple[str, str], ...]:
    """The metadata that carries a failed call's REST status and body to the gateway.

    ``status`` overrides the code's HTTP status (a 413 is RESOURCE_EXHAUSTED in gRPC, whose
    own status is 429). Empty for an rpc without an API family (it has no REST face).
    """
    if family == options_pb2.API_FAMILY_UNSPECIFIED:
        return ()
    status = status or HTTP_STATUS_BY_CODE.get(code, 500)
    shown = INTERNAL_MESSAGE if code in HIDDEN_CODES else message
    return (
        (HTTP_STATUS_KEY, str(status)),
        (ERROR_BODY_KEY, render_error_body(family, status, shown)),
    )


__all__ = [
    "ERROR_BODY_KEY",
    "HTTP_STATUS_BY_CODE",
    "HTTP_STATUS_KEY",
    "INTERNAL_MESSAGE",
    "current_family",
    "error_document",
    "error_metadata",
    "reason",
    "render_error_body",
]
