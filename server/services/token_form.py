"""Parse the bodies of Thinger's `POST /oauth/token` and of `POST /oauth/revoke`.

The documented body is `application/x-www-form-urlencoded`; JSON is accepted too, since
OAuth clients differ. gRPC clients may set the request's fields instead of a body.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

import orjson
from google.api import httpbody_pb2
from thingwire.auth.v1 import auth_pb2

from server.errors import InvalidArgument

MAX_FORM_FIELDS = 16


@dataclass(frozen=True)
class TokenForm:
    """The fields of a token grant."""

    grant_type: str
    username: str = ""
    password: str = ""
    refresh_token: str = ""


def _from_form(data: bytes) -> dict[str, str]:
    try:
        text = data.decode("utf-8")
        # Lenient, as form parsers are: a stray "&" or an empty pair is not an error.
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument("the body is not a valid form") from None
    return {key: values[0] for key, values in fields.items()}


def _from_json(data: bytes) -> dict[str, str]:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidArgument("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    return {key: value for key, value in body.items() if isinstance(value, str)}


def body_fields(raw: httpbody_pb2.HttpBody) -> dict[str, str] | None:
    """The string fields of a form or JSON body; None when there is no body (gRPC callers)."""
    if not raw.data:
        return None
    if "json" in raw.content_type.lower():
        return _from_json(raw.data)
    return _from_form(raw.data)


def parse_token_request(request: auth_pb2.CreateTokenRequest) -> TokenForm:
    """The grant in `request`, from its raw body when there is one, else from its fields."""
    fields = body_fields(request.raw)
    if fields is None:
        fields = {
            "grant_type": request.grant_type,
            "username": request.username,
            "password": request.password,
            "refresh_token": request.refresh_token,
        }
    grant_type = fields.get("grant_type", "")
    if not grant_type:
        raise InvalidArgument("grant_type is required")
    return TokenForm(
        grant_type=grant_type,
        username=fields.get("username", ""),
        password=fields.get("password", ""),
        refresh_token=fields.get("refresh_token", ""),
    )


def parse_revoke_request(request: auth_pb2.RevokeTokenRequest) -> str:
    """The token to revoke, from the form/JSON body or the request's field."""
    fields = body_fields(request.raw)
    token = request.token if fields is None else fields.get("token", "")
    if not token:
        raise InvalidArgument("token is required")
    return token
