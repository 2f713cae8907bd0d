"""Telemetry over the link with real processes killed mid-upload (SIGKILL, no goodbye):
`thingwire serve` and `thingwire agent`, on SQLite and on PostgreSQL.

Every record is in the agent's outbox (filled before it starts, with known timestamps) or
in the database at every moment, and in the end each is stored exactly once
(docs/device-link.md, "Telemetry uploads" and "The outbox").
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from server.storage.db import Database
from tests.integration.agents import AgentProcess
from tests.integration.stack import Stack, stack_fixture

pytestmark = pytest.mark.integration

#: Small batches and no GoAway delay, so an upload of thousands of records takes a while
#: (many batches) and the kills land in the middle of it.
BATCH = 50
stack = stack_fixture(
    THINGWIRE_LINK_MAX_UPLOAD_RECORDS=str(BATCH), THINGWIRE_LINK_GO_AWAY_WINDOW_S="0"
)
#: A multiple of BATCH: every batch is full, so their number is known.
RECORDS = 20_000
#: How long the database is held: the uploads in flight reach the server meanwhile.
LOCKED_S = 1.0
TIMEOUT_S = 120.0


def records(count: int) -> list[dict]:
    """`count` seed-shaped records, one millisecond apart, numbered by `n`."""
    found = []
    for n in range(count):
        seconds, millis = divmod(n, 1000)
        minutes, seconds = divmod(seconds, 60)
        found.append(
            {
                "@t": "track.pos",
                "@ts": f"2026-04-01T10:{minutes:02d}:{seconds:02d}.{millis:03d}Z",
                "loc": {"lat": 57.02241, "lon": 9.89919},
                "nsat": 9,
                "n": n,
            }
        )
    return found


@pytest.fixture(scope="module")
def database(stack: Stack) -> Iterator[Database]:
    db = Database(stack.db_url)
    yield db
    db.dispose()


@pytest.fixture
def make_device(stack: Stack, ada: dict) -> Iterator[Callable[[str], AgentProcess]]:
    agents: list[AgentProcess] = []

    def make(device: str) -> AgentProcess:
        stack.cli("device", "create", "--user", "ada", "--device", device, "--credentials", "c0ntr")
        agent = AgentProcess(stack, "ada", device, "c0ntr")
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.__exit__()


def stored(database: Database, device: str) -> list[int]:
    """The `n` of every record of the device in the database."""
    with database.session() as s:
        rows = s.execute(
            sa.text(
                "SELECT r.fields FROM telemetry_records r JOIN devices d ON d.id = r.device_pk"
                " WHERE d.device_id = :device"
            ),
            {"device": device},
        ).all()
    return [(json.loads(f) if isinstance(f, str) else f)["n"] for (f,) in rows]


def stored_count(database: Database, device: str) -> int:
    with database.session() as s:
        return int(
            s.execute(
                sa.text(
                    "SELECT count(*) FROM telemetry_records r JOIN devices d"
                    " ON d.id = r.device_pk WHERE d.device_id = :device"
                ),
                {"device": device},
            ).scalar_one()
        )


def wait_until_stored(database: Database, device: str, at_least: int) -> int:
    deadline = time.monotonic() + TIMEOUT_S
    while (count := stored_count(database, device)) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} records stored, waiting for {at_least}")
        time.sleep(0.02)
    return count


def assert_nothing_lost(database: Database, agent: AgentProcess) -> None:
    """Every record is in the database or still in the agent's outbox."""
    in_outbox = {record["n"] for record in agent.outbox_records()}
    in_database = set(stored(database, agent.device))
    assert in_outbox | in_database == set(range(RECORDS))


def assert_each_stored_once(database: Database, agent: AgentProcess) -> None:
    """Every record once, and every batch once: a batch sent again kept its id."""
    wait_until_stored(database, agent.device, RECORDS)
    numbers = stored(database, agent.device)
    assert len(numbers) == RECORDS
    assert sorted(numbers) == list(range(RECORDS))
    with database.session() as s:
        batches = s.execute(
            sa.text(
                "SELECT count(*) FROM telemetry_batches b JOIN devices d ON d.id = b.device_pk"
                " WHERE d.device_id = :device"
            ),
            {"device": agent.device},
        ).scalar_one()
    assert batches == RECORDS // BATCH
    deadline = time.monotonic() + TIMEOUT_S
    while agent.outbox_records():  # the last acks reach the agent after the commit
        assert time.monotonic() < deadline, "the outbox did not drain"
        time.sleep(0.05)


def test_the_server_killed_mid_upload_loses_and_repeats_nothing(
    stack: Stack, database: Database, make_device: Callable[[str], AgentProcess]
) -> None:
    """Killed while batches it received wait for the database: they were never
    acknowledged, so the agent still has them and sends them again to the new server."""
    agent = make_device("ingest_server_killed")
    agent.fill_outbox(records(RECORDS))
    agent.start()
    agent.wait_connected()
    wait_until_stored(database, agent.device, 1000)
    with holding_write_lock(database):
        time.sleep(LOCKED_S)  # the uploads in flight reach the server and wait
        stack.stop(signal.SIGKILL)
    at_kill = stored_count(database, agent.device)
    assert at_kill < RECORDS, "the upload ended before the kill: the test proves nothing"
    assert_nothing_lost(database, agent)
    stack.start()  # the same database and ports
    agent.wait_connected(2, timeout=60)
    assert_each_stored_once(database, agent)


def test_the_agent_killed_mid_upload_loses_and_repeats_nothing(
    stack: Stack, database: Database, make_device: Callable[[str], AgentProcess]
) -> None:
    """Killed while its uploads wait for the database: the server stores them after all,
    and the restarted agent's resends (the same batch ids) store nothing again."""
    agent = make_device("ingest_agent_killed")
    agent.fill_outbox(records(RECORDS))
    agent.start()
    agent.wait_connected()
    wait_until_stored(database, agent.device, 1000)
    with holding_write_lock(database):
        time.sleep(LOCKED_S)
        assert agent.kill() == -signal.SIGKILL
    time.sleep(0.5)  # what the server was storing is committed now
    at_kill = stored_count(database, agent.device)
    assert at_kill < RECORDS, "the upload ended before the kill: the test proves nothing"
    assert_nothing_lost(database, agent)
    agent.start()  # the same state directory: the same outbox, the same batch ids
    agent.wait_connected(2)
    assert_each_stored_once(database, agent)


@contextlib.contextmanager
def holding_write_lock(database: Database) -> Iterator[None]:
    """The server's telemetry writes wait (SQLite: for less than its 5 s busy timeout)."""
    if database.is_sqlite:
        assert database.url.database is not None
        raw = sqlite3.connect(database.url.database, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        return
    with database.engine.connect() as connection, connection.begin() as transaction:
        connection.execute(sa.text("LOCK TABLE telemetry_batches IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            transaction.rollback()
