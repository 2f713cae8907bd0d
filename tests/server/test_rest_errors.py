"""The REST error bodies the server renders for each API family."""

from __future__ import annotations

import json

import grpc
import pytest
from thingwire.options.v1 import options_pb2

from server.rest_errors import (
    ERROR_BODY_KEY,
    HTTP_STATUS_KEY,
    MAX_MESSAGE_CHARS,
    error_metadata,
    render_error_body,
)

AWKWARD = 'name is required: "" \\ \n\t\x01 é'


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        (options_pb2.API_FAMILY_THINGER, '{"error":{"message":"nope"}}'),
        (options_pb2.API_FAMILY_AUTOPI, '{"detail":"nope"}'),
        (
            options_pb2.API_FAMILY_DATACOOEE,
            '{"errors":[{"status":"401","title":"Unauthorized","detail":"nope"}]}',
        ),
        (options_pb2.API_FAMILY_LOCAL, '{"error":"nope"}'),
    ],
)
def test_each_family_has_its_documented_body(family: int, expected: str) -> None:
    assert render_error_body(family, 401, "nope") == expected


def test_bodies_are_ascii_json_with_the_same_value() -> None:
    """Metadata values must be printable ASCII: \\uXXXX escapes keep the text intact."""
    body = render_error_body(options_pb2.API_FAMILY_AUTOPI, 400, AWKWARD)
    assert body.isascii()
    assert body.isprintable()
    assert json.loads(body) == {"detail": AWKWARD}


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    body = render_error_body(options_pb2.API_FAMILY_AUTOPI, 400, "bad \ud800 text")
    assert json.loads(body) == {"detail": "bad \ufffd text"}
    body.encode("utf-8")  # valid UTF-8 throughout


def test_an_empty_message_is_the_reason_phrase() -> None:
    assert render_error_body(options_pb2.API_FAMILY_THINGER, 404, "") == (
        '{"error":{"message":"Not Found"}}'
    )


def test_a_long_message_is_cut() -> None:
    body = render_error_body(options_pb2.API_FAMILY_AUTOPI, 400, "x" * 100_000)
    assert json.loads(body) == {"detail": "x" * MAX_MESSAGE_CHARS}


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    ],
)
def test_metadata_carries_the_status_of_the_code(code: grpc.StatusCode, status: int) -> None:
    metadata = dict(error_metadata(options_pb2.API_FAMILY_DATACOOEE, code, "m"))
    assert metadata[HTTP_STATUS_KEY] == str(status)
    assert json.loads(metadata[ERROR_BODY_KEY])["errors"][0]["status"] == str(status)


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN])
def test_internal_messages_are_never_shown(code: grpc.StatusCode) -> None:
    metadata = dict(error_metadata(options_pb2.API_FAMILY_AUTOPI, code, "/srv/db secret path"))
    assert json.loads(metadata[ERROR_BODY_KEY]) == {"detail": "internal error"}
    assert metadata[HTTP_STATUS_KEY] == "500"


def test_an_rpc_without_a_family_has_no_rest_metadata() -> None:
    assert error_metadata(options_pb2.API_FAMILY_UNSPECIFIED, grpc.StatusCode.NOT_FOUND, "m") == ()


def test_an_error_may_carry_its_own_rest_status() -> None:
    """A 413 found by the server is RESOURCE_EXHAUSTED in gRPC, whose own status is 429."""
    metadata = dict(
        error_metadata(
            options_pb2.API_FAMILY_DATACOOEE, grpc.StatusCode.RESOURCE_EXHAUSTED, "big", 413
        )
    )
    assert metadata[HTTP_STATUS_KEY] == "413"
    assert json.loads(metadata[ERROR_BODY_KEY])["errors"][0]["status"] == "413"
