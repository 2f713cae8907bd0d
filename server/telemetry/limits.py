"""The operator's bounds on telemetry ingest, from THINGWIRE_TELEMETRY_* (server/config.py)."""

from __future__ import annotations

from dataclasses import dataclass

from server.config import (
    DEFAULT_TELEMETRY_MAX_BATCH_BYTES,
    DEFAULT_TELEMETRY_QUEUE_BATCHES,
    Settings,
)

__all__ = ["TelemetryLimits"]


@dataclass(frozen=True)
class TelemetryLimits:
    """How many batches may wait for the writer, how big a batch may inflate, and how hard
    the writer's SQLite commits sync (docs/telemetry-ingest.md)."""

    queue_batches: int = DEFAULT_TELEMETRY_QUEUE_BATCHES
    max_batch_bytes: int = DEFAULT_TELEMETRY_MAX_BATCH_BYTES
    sqlite_synchronous: str = "FULL"

    @classmethod
    def from_settings(cls, settings: Settings) -> TelemetryLimits:
        return cls(
            queue_batches=settings.telemetry_queue_batches,
            max_batch_bytes=settings.telemetry_max_batch_bytes,
            sqlite_synchronous=settings.telemetry_sqlite_synchronous,
        )
