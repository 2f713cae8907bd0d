"""The server is SIGKILLed while a device pushes batches with retries; restarted on the same
database, every record the device sent is stored exactly once (SQLite and PostgreSQL).

A batch answered 2xx is forgotten by the device, so a 2xx sent before the commit would lose
it when the server dies; a batch committed whose answer was lost is sent again and must not
be stored twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.storage.db import Database
from server.storage.models import TelemetryRecord
from tests.integration.stack import PASSWORD, ROOT, running_stack

pytestmark = pytest.mark.integration

BATCHES = 400
SIZE = 50
#: The server is killed once this share of the records is stored.
KILL_AT = 0.3
CLIENT_TIMEOUT_S = 180


def rows(database: Database) -> tuple[int, int]:
    """Rows stored, and distinct record numbers among them (the client's `n` field)."""
    with database.session() as s:
        count = s.scalar(sa.select(sa.func.count()).select_from(TelemetryRecord)) or 0
        n: sa.ColumnElement[Any] = (
            sa.func.json_extract(TelemetryRecord.fields, "$.n")
            if database.is_sqlite
            else sa.literal_column("fields ->> 'n'")
        )
        distinct = (
            s.scalar(sa.select(sa.func.count(sa.distinct(n))).select_from(TelemetryRecord)) or 0
        )
    return int(count), int(distinct)


def test_a_killed_server_loses_no_acknowledged_batch_and_stores_each_record_once(
    tmp_path: Path, db_url_factory: Any
) -> None:
    with running_stack(tmp_path, db_url_factory(tmp_path)) as stack:
        stack.cli_json(
            "user", "create", "--email", "ada@example.com", "--password", PASSWORD,
            "--username", "ada",
        )  # fmt: skip
        car = stack.cli_json("device", "create", "--user", "ada", "--device", "car",
                             "--credentials", "c")  # fmt: skip
        database = Database(stack.db_url)
        client = subprocess.Popen(
            [
                sys.executable, "-m", "tests.integration.push_client",
                "--url", stack.base_url, "--token", car["push_token"],
                "--batches", str(BATCHES), "--size", str(SIZE),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while rows(database)[0] < KILL_AT * BATCHES * SIZE:
                assert client.poll() is None, "the client finished before the kill"
                assert time.monotonic() < deadline, "the pushes did not get going"
                time.sleep(0.05)
            stack.stop(signal.SIGKILL)
            before_restart = rows(database)[0]
            assert before_restart < BATCHES * SIZE, "the kill came too late to matter"
            database.dispose()
            time.sleep(0.5)  # the device keeps retrying against a dead address
            stack.start()
            out, _ = client.communicate(timeout=CLIENT_TIMEOUT_S)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["records"] == BATCHES * SIZE
        assert summary["retries"] > 0, "no push failed: the kill did not land mid-way"
        assert rows(database) == (BATCHES * SIZE, BATCHES * SIZE)
        database.dispose()
