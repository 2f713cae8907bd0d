"""The body of an HTTP push: gunzipped within a bound, parsed once, checked for shape.

AutoPi firmware may gzip its batches (`content-encoding: gzip`). They are inflated here,
in the server, rather than by the gateway, so that each way a body can be wrong gets its
own documented answer: bytes that are not gzip are a 400, and a body that inflates past the
batch limit is a 413 as soon as the limit is passed, never a buffer the size of what a
"gzip bomb" unpacks to (docs/telemetry-ingest.md, "Compressed bodies").
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from server.errors import InvalidArgument, PayloadTooLarge
from server.telemetry import batch_json

__all__ = ["inflate", "parse_records"]

#: ``content-encoding`` values meaning gzip (RFC 9110 keeps x-gzip as its alias).
GZIP_ENCODINGS = frozenset({"gzip", "x-gzip"})
PLAIN_ENCODINGS = frozenset({"", "identity"})
#: zlib's window bits for the gzip container (header and CRC checked).
_GZIP_WBITS = 16 + zlib.MAX_WBITS

NOT_GZIP = "the body is not valid gzip"
NOT_JSON = "the body is not valid JSON"
NOT_RECORDS = "the body must be a JSON array of records (objects with @t and @ts)"


def too_large(limit: int) -> PayloadTooLarge:
    """The 413 of a batch over ``limit`` bytes."""
    return PayloadTooLarge(f"the batch is larger than {limit} bytes once decompressed")


def inflate(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The JSON bytes of a push body: ``body`` itself, or its gzip members inflated.

    At most ``limit + 1`` bytes are ever inflated, whatever the compression ratio. Raises
    PayloadTooLarge past ``limit``, InvalidArgument for a body that is not valid gzip
    (corrupt, truncated, trailing garbage) or an encoding other than gzip.
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding in PLAIN_ENCODINGS:
        if len(body) > limit:
            raise too_large(limit)
        return body
    if encoding not in GZIP_ENCODINGS:
        raise InvalidArgument(f"unsupported content-encoding {encoding[:40]!r}: send gzip or none")
    parts: list[bytes] = []
    total = 0
    rest = body
    while True:  # a gzip stream may hold several members, one after the other
        inflater = zlib.decompressobj(_GZIP_WBITS)
        try:
            part = inflater.decompress(rest, limit - total + 1)
        except zlib.error:
            raise InvalidArgument(NOT_GZIP) from None
        total += len(part)
        if total > limit:
            raise too_large(limit)
        parts.append(part)
        if not inflater.eof:  # input ended inside the member: a truncated body
            raise InvalidArgument(f"{NOT_GZIP}: it is truncated")
        rest = inflater.unused_data
        if not rest:
            return b"".join(parts)


def parse_records(data: bytes) -> list[Any]:
    """The records of a batch: a JSON array, or one record object alone (taken as a batch of
    one). InvalidArgument for bytes that are not JSON, or for any other JSON value."""
    try:
        parsed = batch_json.loads(data)
    except orjson.JSONDecodeError as error:
        raise InvalidArgument(f"{NOT_JSON}: {error}") from None
    if isinstance(parsed, list):
        return parsed
    if isinstance(parsed, dict):
        return [parsed]
    raise InvalidArgument(NOT_RECORDS)
