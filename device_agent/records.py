"""Telemetry records as the device sends them: JSON objects with ``@t`` and ``@ts``.

The shapes are AutoPi's (a type ``@t``, an ISO-8601 UTC time ``@ts``, any other fields);
`encode` makes the bytes the outbox keeps. A record JSON cannot carry (NaN, infinity, a
value of no JSON type) is refused here, on the device: inside a batch it would make the
whole batch unreadable to the cloud.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

#: The record type the outbox adds when it had to drop records (docs/device-link.md).
DROPPED_TYPE = "event.outbox.dropped"
#: The largest record the outbox keeps; a bigger one is refused at append.
MAX_RECORD_BYTES = 64 * 1024


def timestamp(epoch_s: float | None = None) -> str:
    """``@ts`` for a moment (now by default): ISO-8601 UTC with microseconds and a Z."""
    moment = datetime.fromtimestamp(time.time() if epoch_s is None else epoch_s, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def encode(record: dict[str, Any]) -> bytes | None:
    """The record as compact JSON bytes, or None when it cannot be sent (no ``@t`` or
    ``@ts``, not JSON, larger than MAX_RECORD_BYTES)."""
    if not isinstance(record, dict) or "@t" not in record or "@ts" not in record:
        return None
    try:
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        # A lone surrogate ("\ud800") is no UTF-8 (UnicodeEncodeError, a ValueError);
        # nesting deeper than the interpreter recurses is RecursionError.
        data = body.encode()
    except (TypeError, ValueError, RecursionError):
        return None
    return data if len(data) <= MAX_RECORD_BYTES else None


def dropped_record(count: int, total: int) -> bytes:
    """The record that tells the cloud ``count`` records were dropped (``total`` so far)."""
    body = encode(
        {
            "@t": DROPPED_TYPE,
            "@ts": timestamp(),
            "@tag": "outbox/dropped",
            "count": count,
            "total": total,
        }
    )
    assert body is not None
    return body
