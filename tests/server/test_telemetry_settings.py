"""THINGWIRE_TELEMETRY_*: the ingest queue, batch limit and SQLite durability settings."""

from __future__ import annotations

import pytest

from server.config import ConfigError, Settings
from server.telemetry.limits import TelemetryLimits


def test_the_defaults_are_documented() -> None:
    limits = TelemetryLimits.from_settings(Settings.from_env({}))
    assert limits == TelemetryLimits(1024, 8 * 1024 * 1024, "FULL")


def test_the_variables_set_them() -> None:
    env = {
        "THINGWIRE_TELEMETRY_QUEUE_BATCHES": "8",
        "THINGWIRE_TELEMETRY_MAX_BATCH_BYTES": "65536",
        "THINGWIRE_TELEMETRY_SQLITE_SYNCHRONOUS": "normal",
    }
    assert TelemetryLimits.from_settings(Settings.from_env(env)) == TelemetryLimits(
        8, 65536, "NORMAL"
    )


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("THINGWIRE_TELEMETRY_QUEUE_BATCHES", "0"),
        ("THINGWIRE_TELEMETRY_QUEUE_BATCHES", ""),
        ("THINGWIRE_TELEMETRY_MAX_BATCH_BYTES", "1023"),
        ("THINGWIRE_TELEMETRY_MAX_BATCH_BYTES", "8M"),
        ("THINGWIRE_TELEMETRY_SQLITE_SYNCHRONOUS", "OFF"),
        ("THINGWIRE_TELEMETRY_SQLITE_SYNCHRONOUS", ""),
    ],
)
def test_unusable_values_are_refused(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: raw})
