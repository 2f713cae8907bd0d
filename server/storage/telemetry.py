"""Device records: split a pushed batch into usable and rejected records, store it once.

A device (AutoPi firmware, the seed's example) posts a JSON array of records, each with a
type ``@t``, a timestamp ``@ts`` and any other fields. It deletes the batch once it is
answered 2xx and retries anything else, so one unusable record must never fail the batch:
``split_batch`` keeps the usable records and names what is wrong with the others, and
``store_records`` inserts the usable ones keyed by (device, ``@t``, ``@ts``), ignoring
repeats, so a retried batch is stored exactly once (docs/design.md, "Telemetry storage").

The hot path avoids per-record objects: a usable record is a plain tuple, timestamps become
integers once, and the whole batch is one statement.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from server.storage import rollups
from server.storage._common import insert_ignore
from server.storage.models import TelemetryBatch, TelemetryRecord, TelemetryReject

__all__ = [
    "MAX_BATCH_ID_LENGTH",
    "MAX_RECORD_TYPE_LENGTH",
    "MAX_REJECTED_RECORD_CHARS",
    "MAX_REJECTS_KEPT_PER_BATCH",
    "Rejected",
    "Split",
    "StoredCounts",
    "UsableRecord",
    "claim_batch",
    "epoch_us",
    "format_timestamp",
    "iso_to_epoch_us",
    "parse_timestamp",
    "split_batch",
    "store_records",
    "store_rejects",
]

MAX_RECORD_TYPE_LENGTH = 128
MAX_BATCH_ID_LENGTH = 64
#: A rejected record is kept as JSON cut to this many characters: enough to see what is
#: wrong, bounded so that a device sending megabytes of garbage cannot fill the disk.
MAX_REJECTED_RECORD_CHARS = 4096
#: At most this many of one batch's rejected records are kept (the first ones): a batch of
#: a million tiny bad records (``[0, 1, 2, …]``, 8 MiB) would otherwise write a million rows,
#: hundreds of MiB, and hold the writer for as long (docs/telemetry-ingest.md).
MAX_REJECTS_KEPT_PER_BATCH = 1000
# Printable text: a control character (a NUL above all, which PostgreSQL refuses in text)
# would corrupt listings and logs that show the type.
_RECORD_TYPE_RE = re.compile(rf"[^\x00-\x1f\x7f]{{1,{MAX_RECORD_TYPE_LENGTH}}}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_EPOCH_DATE = date(1970, 1, 1)
_TABLE: sa.Table = TelemetryRecord.__table__  # type: ignore[assignment]
_REJECTS: sa.Table = TelemetryReject.__table__  # type: ignore[assignment]
_BATCHES: sa.Table = TelemetryBatch.__table__  # type: ignore[assignment]

#: (``@t``, ``@ts`` in epoch microseconds, the other fields as compact JSON text).
UsableRecord = tuple[str, int, str]


class Rejected(NamedTuple):
    """A record set aside: its position in the batch (from 0), why, and the record as received."""

    position: int
    reason: str
    record: object


class Split(NamedTuple):
    """A batch divided into the records to store and those that cannot be."""

    usable: list[UsableRecord]
    rejected: list[Rejected]


class StoredCounts(NamedTuple):
    """What one ``store_records`` call did: rows written, and records already stored."""

    new: int
    repeats: int


def epoch_us(moment: datetime) -> int:
    """An aware datetime as epoch microseconds: exact integer arithmetic, in range for
    years 1 to 9999 (well inside 64 bits), finer fractions cut."""
    return (moment - _EPOCH) // _MICROSECOND


def iso_to_epoch_us(text: str) -> int | None:
    """What ``datetime.fromisoformat`` reads in ``text``, as epoch microseconds; None when it
    reads nothing. RFC 3339's lowercase "t" and "z" are read too (fromisoformat refuses
    them), and a time without an offset is UTC. Callers add their own rules of shape."""
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND  # epoch_us, inline: once per pushed record


@functools.lru_cache(maxsize=4096)
def _day(days: int) -> str:
    try:
        return (_EPOCH_DATE + timedelta(days=days)).isoformat()
    except OverflowError:
        # A UTC day outside years 1 to 9999, which an offset at either end reaches
        # (9999-12-31T23:59:59-23:59): written with the year it falls in.
        day = time.gmtime(days * 86_400)
        return f"{day.tm_year:04d}-{day.tm_mon:02d}-{day.tm_mday:02d}"


def format_timestamp(ts: int) -> str:
    """Epoch microseconds as every answer writes times: ``2020-07-09T10:11:53.811839Z``
    (UTC, always six fraction digits), the inverse of ``parse_timestamp``.

    Integer arithmetic and a cache of dates: answers write up to 100,000 of these, and a
    datetime per value cost most of an answer's time.
    """
    seconds, micros = divmod(ts, 1_000_000)
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}Z"


def parse_timestamp(value: object) -> int | None:
    """``@ts`` as epoch microseconds, or None when it is not a usable ISO-8601 time.

    Accepts what devices send: ``2024-01-01T12:00:00Z``, fractions of any length (cut to
    microseconds, the finest unit stored), and offsets such as ``+02:00`` or ``+0200``, all
    normalised to UTC so one instant is one key whatever its spelling. A time without an
    offset is taken as UTC (AutoPi records are UTC). A date alone is refused: a record
    keyed by midnight would collide with every other record of that day.
    """
    if not isinstance(value, str) or len(value) < 16 or len(value) > 64:
        return None
    if value[10] not in "Tt ":
        return None
    return iso_to_epoch_us(value)


#: ``@t`` values already found printable and short enough (types repeat in every batch).
_GOOD_TYPES: set[str] = set()
_GOOD_TYPES_KEPT = 4096


def _good_type(record_type: object) -> bool:
    """``@t`` is 1 to MAX_RECORD_TYPE_LENGTH printable characters."""
    if not isinstance(record_type, str):
        return False
    if record_type in _GOOD_TYPES:
        return True
    if not _RECORD_TYPE_RE.fullmatch(record_type):
        return False
    if len(_GOOD_TYPES) >= _GOOD_TYPES_KEPT:
        _GOOD_TYPES.clear()
    _GOOD_TYPES.add(record_type)
    return True


def _check(record: object) -> UsableRecord | str:
    """The usable form of one record, or the reason it cannot be stored."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if "@t" not in record:
        return "missing @t"
    record_type = record["@t"]
    if not _good_type(record_type):
        return f"bad @t: must be a string of 1 to {MAX_RECORD_TYPE_LENGTH} printable characters"
    if "@ts" not in record:
        return "missing @ts"
    ts = parse_timestamp(record["@ts"])
    if ts is None:
        return "bad @ts: must be an ISO-8601 date and time, such as 2024-01-01T12:00:00Z"
    # A copy in C less two keys: half the time of a comprehension rebuilding the dict.
    fields = record.copy()
    del fields["@t"], fields["@ts"]
    try:
        text = orjson.dumps(fields).decode()
    except (TypeError, orjson.JSONEncodeError):  # values no JSON parser would have made
        return "fields are not representable as JSON"
    if "\\u0000" in text:  # PostgreSQL's jsonb refuses a NUL character in a string
        return "fields must not contain the NUL character (\\u0000)"
    return (record_type, ts, text)


def split_batch(batch: Iterable[Any]) -> Split:
    """Divide a parsed JSON batch into usable records and rejected ones, each with a reason.

    Never raises for a bad record: the device would retry the whole batch forever, so the
    good records are kept and the bad ones reported for an operator to see and count.
    """
    usable: list[UsableRecord] = []
    rejected: list[Rejected] = []
    for index, record in enumerate(batch):
        checked = _check(record)
        if isinstance(checked, str):
            rejected.append(Rejected(index, checked, record))
        else:
            usable.append(checked)
    return Split(usable, rejected)


#: The PostgreSQL batch insert: the batch's three columns travel as three JSON arrays (one
#: text parameter each), zipped back into rows by ``ROWS FROM``.
_POSTGRES_INSERT = sa.text(
    "INSERT INTO telemetry_records (device_pk, record_type, ts, fields) "
    "SELECT :device_pk, batch.record_type, batch.ts::bigint, batch.fields FROM ROWS FROM ("
    " jsonb_array_elements_text(CAST(:types AS jsonb)),"
    " jsonb_array_elements_text(CAST(:stamps AS jsonb)),"
    " jsonb_array_elements(CAST(:fields AS jsonb))"
    ") AS batch(record_type, ts, fields) ON CONFLICT DO NOTHING"
).execution_options(preserve_rowcount=True)


def _postgres_params(device_pk: int, records: Sequence[UsableRecord]) -> dict[str, Any]:
    """Four parameters whatever the batch size, each made by one call into C.

    A multi-row VALUES list would bind four parameters per record and hit the protocol's
    65,535-parameter limit at 16,383 records. Array parameters have no limit, but psycopg
    escapes the elements of a text array one by one in Python (about 35 µs per record
    measured); a JSON array is one string: orjson writes the types and timestamps, and the
    fields, JSON already, are joined as they are. PostgreSQL parses each array once, and
    ``jsonb_array_elements`` hands each record's fields over as jsonb without re-parsing.
    """
    types, stamps, fields = zip(*records, strict=True)
    return {
        "device_pk": device_pk,
        "types": orjson.dumps(types).decode(),
        "stamps": orjson.dumps(stamps).decode(),
        "fields": "[" + ",".join(fields) + "]",
    }


def _sqlite_insert(device_pk: int) -> str:
    """The SQLite batch insert of one device's records: three parameters per row."""
    # The table's name and an integer: no outside text reaches the statement.
    head = f"INSERT INTO {_TABLE.name} (device_pk, record_type, ts, fields) "
    return head + f"VALUES ({device_pk:d}, ?, ?, ?) ON CONFLICT DO NOTHING"


def store_records(
    session: Session | Connection, device_pk: int, records: Sequence[UsableRecord]
) -> StoredCounts:
    """Insert ``records`` of one device in one statement; repeats are ignored, not errors.

    A record whose (device, ``@t``, ``@ts``) is stored already, or that appears twice in the
    batch, counts as a repeat: the device retried after losing our answer, and the first
    copy wins. The caller's unit of work commits; answer the device only after that.
    """
    if not records:
        return StoredCounts(0, 0)
    # Core on the session's connection: the ORM's bulk path would build objects per row and
    # hide the row count; ``preserve_rowcount`` keeps the count of an INSERT, which
    # SQLAlchemy otherwise reports only for UPDATE and DELETE.
    connection = session if isinstance(session, Connection) else session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        result = connection.execute(_POSTGRES_INSERT, _postgres_params(device_pk, records))
    elif dialect == "sqlite":
        # executemany of one prepared statement, straight to the driver: SQLite has no array
        # parameters, and its statement steps per row in C without re-parsing. The records
        # are bound as the tuples they are, with no dict or type processing per row; the
        # device is an integer of ours, written into the text (one statement per device).
        result = connection.exec_driver_sql(_sqlite_insert(int(device_pk)), records)
    else:  # pragma: no cover - only the two supported backends
        raise NotImplementedError(dialect)
    new = int(result.rowcount)
    if new:
        rollups.mark_records(session, device_pk, records)  # their minutes' rollups are stale
    return StoredCounts(new, len(records) - new)


#: What a rejected record is kept as when neither JSON nor ``repr`` can show it.
UNSHOWABLE_RECORD = "<the record is nested too deeply to be shown>"


def _reject_text(record: object) -> str:
    """A rejected record as text: compact JSON, else its ``repr`` (a value no JSON writer
    takes, or nesting deeper than orjson writes), else a fixed text. Never raises: a reject
    that cannot be kept would fail its whole batch, and the device would send it forever."""
    try:
        return orjson.dumps(record).decode()
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return repr(record)
    except RecursionError:  # orjson reads 1024 levels; repr recurses in C, up to ~1000
        return UNSHOWABLE_RECORD


def store_rejects(
    session: Session | Connection,
    device_pk: int,
    source: str,
    rejected: Sequence[Rejected],
    received_ts: int,
) -> int:
    """Set ``rejected`` records aside for the operator; the number not set aside before.

    Keyed by the SHA-256 of the record's JSON, so the same bad record in a retried batch is
    kept once. Only the first ``MAX_REJECTS_KEPT_PER_BATCH`` are kept; the caller counts
    them all. ``received_ts`` is epoch microseconds.
    """
    if not rejected:
        return 0
    rows = []
    for item in rejected[:MAX_REJECTS_KEPT_PER_BATCH]:
        text = _reject_text(item.record)
        rows.append(
            {
                "device_pk": device_pk,
                "digest": hashlib.sha256(text.encode()).hexdigest(),
                "received_ts": received_ts,
                "source": source,
                "position": item.position,
                "reason": item.reason[:200],
                # orjson and repr escape a NUL, which PostgreSQL text would refuse raw.
                "record": text[:MAX_REJECTED_RECORD_CHARS],
            }
        )
    return insert_ignore(session, _REJECTS, rows)


def claim_batch(
    session: Session | Connection, device_pk: int, batch_id: str, received_ts: int
) -> bool:
    """Record that ``batch_id`` of the device is being stored; False when it was before.

    Call it in the unit of work that stores the batch's records: both commit or neither, so
    a batch is never marked stored without its records.
    """
    row = {"device_pk": device_pk, "batch_id": batch_id, "received_ts": received_ts}
    return insert_ignore(session, _BATCHES, row) == 1
