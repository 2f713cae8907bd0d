"""Envoy's own replies (404, 413, 503, 504, timeouts, malformed requests) in each family's shape.

They never reach the server, so the HTTP connection manager's `local_reply_config` shapes
them: one mapper per (family, case), matched on the request's path prefix and the reply's
status, rendering the same documents as `server.rest_errors` with Envoy's `json_format`
(which escapes what it substitutes). Native gRPC requests keep Envoy's gRPC replies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.rest_errors import error_document

#: What Envoy's own replies say, by status; `%…%` are Envoy's substitutions. A status not
#: listed keeps Envoy's (or the Lua filter's) text.
MESSAGES: dict[int, str] = {
    400: "bad request: the request is malformed",
    404: "no such endpoint: %REQ(:METHOD)% %PATH(NQ)%",
    405: "no such endpoint: %REQ(:METHOD)% %PATH(NQ)%",
    408: "request timeout: the request was not received in time",
    431: "request headers are too large",
    502: "bad gateway: the thingwire server answered badly",
    503: "service unavailable: the thingwire server cannot be reached",
    504: "gateway timeout: the thingwire server did not answer in time",
}
OTHER_MESSAGE = "%LOCAL_REPLY_BODY%"
#: Statuses with a mapper of their own (JSON:API wants the status as a string).
STATUSES = (400, 401, 403, 404, 405, 408, 413, 414, 429, 431, 500, 502, 503, 504)
#: The statuses of the replies the Lua filter makes itself.
LUA_STATUSES = (400, 414)


@dataclass(frozen=True)
class Family:
    """Paths (prefixes; none for the default family) and the `ApiFamily` they belong to."""

    family: int
    prefixes: tuple[str, ...] = ()


def _header(name: str, match: dict[str, Any]) -> dict[str, Any]:
    return {"header_filter": {"header": {"name": name, **match}}}


def _status(code: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {"op": "EQ", "value": {"default_value": code, "runtime_key": "unused"}}
        }
    }


def _all(*filters: dict[str, Any]) -> dict[str, Any]:
    present = [f for f in filters if f]
    if not present:
        return {"not_health_check_filter": {}}  # true for every request we serve
    return present[0] if len(present) == 1 else {"and_filter": {"filters": present}}


def _family_filter(family: Family) -> dict[str, Any]:
    """The request's original path starts with one of the family's prefixes.

    After the transcoder matched, `:path` is the gRPC path and the REST one is in
    x-envoy-original-path; before, `:path` is the REST path (no prefix matches a gRPC one).
    """
    checks = [
        _header(name, {"string_match": {"prefix": prefix}})
        for prefix in family.prefixes
        for name in ("x-envoy-original-path", ":path")
    ]
    return {"or_filter": {"filters": checks}} if checks else {}


def _cel(expression: str) -> dict[str, Any]:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": expression,
            },
        }
    }


def _transcoder_failure() -> dict[str, Any]:
    """The transcoder refused the body or a query parameter (its details say so)."""
    return _cel("response.code_details.contains('grpc_json_transcode_failure')")


#: gRPC needs HTTP/2. Such requests take a route of their own that answers a 415 in JSON
#: (gateway/config.py); this is the gRPC-form reply left if that answer cannot be had.
_HTTP1 = _cel("request.protocol.startsWith('HTTP/1')")
#: The grpc-message of Envoy's own replies to native gRPC calls over HTTP/1.
GRPC_NEEDS_HTTP2 = "unsupported protocol: gRPC needs HTTP/2"


def _grpc_mapper(when: dict[str, Any], message: str) -> dict[str, Any]:
    """Envoy answers a native gRPC request's local reply in gRPC form (HTTP 200, its status
    as grpc-status); a mapper can only choose the text, which becomes grpc-message."""
    return {"filter": when, "body_format_override": {"text_format": message}}


def _mapper(
    when: dict[str, Any], family: int, status: int | None, message: str, *marks: str
) -> dict[str, Any]:
    return {
        "filter": when,
        "headers_to_add": [
            {"header": {"key": name, "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for name in (SHAPED_HEADER, *marks)
        ],
        "body_format_override": {
            "json_format": error_document(family, status, message),
            "content_type": "application/json",
        },
    }


#: Set on every reply shaped here; the Lua filter leaves those bodies alone.
SHAPED_HEADER = "x-thingwire-shaped"


def local_reply_config(
    families: Sequence[Family],
    *,
    native_grpc_regex: str,
    reject_header: str,
    transcoder_header: str,
    not_json_prefix: str,
    max_request_body_bytes: int,
) -> dict[str, Any]:
    """The `local_reply_config` of the HTTP connection manager.

    `families` are tried in order; put the default (no prefixes) last. A reply to a request
    the Lua filter refused (it sets `reject_header`) keeps the filter's message; the
    transcoder's 400s get `not_json_prefix` and `transcoder_header`, and the Lua filter
    finishes their message (why: docs/architecture.md).
    """
    native_grpc = _all(
        _header("content-type", {"string_match": {"safe_regex": {"regex": native_grpc_regex}}}),
        # The transcoder makes a REST request's content type gRPC; it also sets this.
        _header("x-envoy-original-path", {"present_match": True, "invert_match": True}),
    )
    messages = {
        **MESSAGES,
        413: f"request body is too large (limit {max_request_body_bytes} bytes)",
    }
    mappers: list[dict[str, Any]] = [
        # Native gRPC: Envoy's reply is a gRPC status; only its message is ours, never
        # Envoy's own text ("upstream connect error or disconnect/reset before headers").
        _grpc_mapper(_all(native_grpc, _HTTP1), GRPC_NEEDS_HTTP2),
        *(
            _grpc_mapper(_all(native_grpc, _status(status)), message)
            for status, message in messages.items()
            if "%" not in message
        ),
        {"filter": native_grpc},
    ]
    rejected = _header(reject_header, {"present_match": True})
    for family in families:
        where = _family_filter(family)
        for status in LUA_STATUSES:
            mappers.append(
                _mapper(
                    _all(where, rejected, _status(status)), family.family, status, OTHER_MESSAGE
                )
            )
        mappers.append(
            _mapper(
                _all(where, _status(400), _transcoder_failure()),
                family.family,
                400,
                not_json_prefix + "%LOCAL_REPLY_BODY%",
                transcoder_header,
            )
        )
        for status in STATUSES:
            message = messages.get(status, OTHER_MESSAGE)
            mappers.append(_mapper(_all(where, _status(status)), family.family, status, message))
        mappers.append(_mapper(_all(where), family.family, None, OTHER_MESSAGE))
    return {"mappers": mappers}


__all__ = ["GRPC_NEEDS_HTTP2", "MESSAGES", "SHAPED_HEADER", "Family", "local_reply_config"]
