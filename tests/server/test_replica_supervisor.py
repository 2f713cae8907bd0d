"""`thingwire serve --replicas N`'s rules that need no running stack: what it refuses, and
how long it waits before starting a replica that died (the stack itself:
tests/integration/test_replicas.py)."""

from __future__ import annotations

import pytest

from server import replicas
from server.config import ConfigError, Settings

POSTGRES = "postgresql://postgres@127.0.0.1/x"
NATS = "nats://127.0.0.1:4222"


@pytest.mark.parametrize(
    ("settings", "count", "message"),
    [
        (Settings(db_url=POSTGRES, nats_url=NATS), 0, "at least 1"),
        (Settings(db_url=POSTGRES), 2, "set THINGWIRE_NATS_URL"),
        (Settings(nats_url=NATS), 2, "needs PostgreSQL"),
        (Settings(db_url=POSTGRES, nats_url=NATS, grpc_port=65535), 2, "past 65535"),
    ],
)
def test_what_replicas_refuse(settings: Settings, count: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replicas.check_replica_settings(settings, count)


def test_replicas_on_postgresql_with_nats_are_accepted() -> None:
    replicas.check_replica_settings(Settings(db_url=POSTGRES, nats_url=NATS), 3)


def test_each_replica_has_its_port_and_socket() -> None:
    settings = Settings(db_url=POSTGRES, nats_url=NATS, grpc_port=6000)
    made = [replicas.Replica(settings, index) for index in range(3)]
    assert [r.port for r in made] == [6000, 6001, 6002]
    assert len({r.socket for r in made}) == 3
    assert made[2].command()[-2:] == ["--replica-index", "2"]


def test_a_replica_that_keeps_dying_waits_longer_and_a_long_run_resets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(replicas.time, "monotonic", lambda: now[0])
    replica = replicas.Replica(Settings(db_url=POSTGRES, nats_url=NATS), 0)
    replica.started_at = now[0]
    delays = []
    for _ in range(7):
        now[0] += 1  # dies a second after each start
        delays.append(replica.next_delay())
        replica.started_at = now[0]
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    now[0] += replicas.RESTART_RESET_AFTER_S + 1  # ran for over a minute, then died
    assert replica.next_delay() == 1
