"""The push body: gzip inflated within a bound, JSON parsed once, shapes checked."""

from __future__ import annotations

import gzip
import zlib

import pytest

from server.errors import InvalidArgument, PayloadTooLarge
from server.storage.telemetry import split_batch
from server.telemetry.push_body import inflate, parse_records

LIMIT = 1024


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity "])
def test_a_plain_body_is_itself(encoding: str | None) -> None:
    assert inflate(b"[1]", encoding, LIMIT) == b"[1]"


def test_a_plain_body_over_the_limit_is_too_large() -> None:
    assert inflate(b"x" * LIMIT, None, LIMIT) == b"x" * LIMIT
    with pytest.raises(PayloadTooLarge):
        inflate(b"x" * (LIMIT + 1), None, LIMIT)


def test_gzip_is_inflated_up_to_the_limit_exactly() -> None:
    body = b"y" * LIMIT
    assert inflate(gzip.compress(body), "gzip", LIMIT) == body
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(body + b"y"), "x-gzip", LIMIT)


def test_several_gzip_members_are_one_body_within_one_limit() -> None:
    half = b"z" * (LIMIT // 2)
    assert inflate(gzip.compress(half) + gzip.compress(half), "GZIP", LIMIT) == half + half
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(half) * 3, "gzip", LIMIT)


def test_a_bomb_is_refused_without_inflating_it() -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(deflater.compress(chunk) for _ in range(64)) + deflater.flush()
    with pytest.raises(PayloadTooLarge, match=str(LIMIT)):
        inflate(bomb, "gzip", LIMIT)


@pytest.mark.parametrize(
    "body",
    [b"plain", gzip.compress(b"[]")[:-4], gzip.compress(b"[]") + b"!", b"", b"\x1f\x8b"],
)
def test_broken_gzip_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidArgument, match="gzip"):
        inflate(body, "gzip", LIMIT)


@pytest.mark.parametrize("encoding", ["br", "deflate", "gzip, br"])
def test_other_encodings_are_invalid(encoding: str) -> None:
    with pytest.raises(InvalidArgument, match="content-encoding"):
        inflate(b"[]", encoding, LIMIT)


def test_records_are_an_array_or_one_object() -> None:
    assert parse_records(b'[{"@t": "a"}, 1]') == [{"@t": "a"}, 1]
    assert parse_records(b'{"@t": "a"}') == [{"@t": "a"}]
    assert parse_records(b"[]") == []


@pytest.mark.parametrize("body", [b"1", b'"x"', b"null", b"false"])
def test_other_json_values_are_invalid(body: bytes) -> None:
    with pytest.raises(InvalidArgument, match="JSON array"):
        parse_records(body)


@pytest.mark.parametrize(
    "body", [b"", b"[", b"[1,]", b"[Nan]", b"[infinity]", b"\xff", b"[" * 2000 + b"]" * 2000]
)
def test_bytes_that_are_not_json_are_invalid(body: bytes) -> None:
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_records(body)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"1e400", "a number beyond a double"),
        (b"-1e400", "a number beyond a double"),
        (b"1" + b"0" * 400, "an integer beyond a double"),
        (b"1" * 5000, "more digits than Python converts to an integer"),
        (b'"\\ud800"', "a lone surrogate escape"),
        (b"NaN", "Python's json.dumps of a float without a value"),
        (b"Infinity", "Python's json.dumps of an infinite float"),
        (b"-Infinity", "Python's json.dumps of a negative infinite float"),
    ],
)
def test_valid_json_orjson_refuses_sets_aside_only_its_record(value: bytes, why: str) -> None:
    good = b'{"@t": "a", "@ts": "2024-01-01T00:00:00Z", "v": 1}'
    odd = b'{"@t": "a", "@ts": "2024-01-01T00:00:01Z", "v": ' + value + b"}"
    split = split_batch(parse_records(b"[" + good + b"," + odd + b"]"))
    assert split.usable == [("a", 1_704_067_200_000_000, '{"v":1}')], why
    assert [(r.position, r.reason) for r in split.rejected] == [
        (1, "fields are not representable as JSON")
    ]


def test_the_fallback_reads_numbers_as_orjson_does() -> None:
    # 2**64 is a double to orjson: the same when another value sends the batch to json.
    body = b'[{"big": 18446744073709551616, "max": 18446744073709551615, "odd": 1e400}]'
    (record,) = parse_records(body)
    assert record["big"] == 1.8446744073709552e19
    assert record["max"] == 18446744073709551615
