"""What the rollups' dirty marks cost ingest: a stored batch with and without its marks.

The writer's transaction, measured in process: one unit of work storing a batch of fresh
seed-shaped records (the four record types of docs/telemetry-ingest.md) for one of 20
devices, then committing (the storage pragmas: WAL, ``synchronous=NORMAL``). Rounds
alternate the two sides, with the marks (``store_records`` as shipped) and without (``mark_records``
replaced by a no-op), on the same database; medians of the per-batch times. The HTTP
ingest benchmark (bench/ingest_http.py) includes the marks too, but on a shared machine
its run-to-run spread is far larger than their cost.

    .venv/bin/python -m bench.rollup_marks [--batches 400] [--sizes 100,1] [--postgres]
        [--quick]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from server.security.hashing import configure_argon2
from server.storage import devices, rollups, telemetry, users
from server.storage.db import Database

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
DEVICES = 20
SHAPES = [
    (
        "track.pos",
        '{"utc":"06:02:24","cog":140.22,"nsat":9,"alt":34,"sog":0,'
        '"loc":{"lat":57.02241,"lon":9.89919}}',
    ),
    ("obd.bat", '{"voltage":15.4,"state":"overcharging","level":100}'),
    ("ec2x.data_usage", '{"sent":2695,"recv":4742}'),
    ("event.system.minion", '{"@tag":"system/minion/online"}'),
]


@contextmanager
def _database(kind: str) -> Iterator[Database]:
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "sqlite":
            database = Database(f"sqlite:///{tmp}/bench.db")
            try:
                yield database
            finally:
                database.dispose()
            return
        name = f"thingwire_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        database = Database(f"postgresql://postgres@127.0.0.1:5432/{name}")
        try:
            yield database
        finally:
            database.dispose()
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _run(kind: str, batches: int, size: int) -> dict[str, float]:
    with _database(kind) as database:
        database.migrate()
        with database.session() as s:
            owner = users.create_user(s, "bench@example.com", "bench-password-1", "b")
            pks = [devices.create_device(s, owner.id, f"d{i}", "c")[0].id for i in range(DEVICES)]
        clock = [int(time.time()) * 1_000_000]
        real_mark = rollups.mark_records

        def batch(marks: bool) -> float:
            rows = []
            for i in range(size):
                clock[0] += 1
                record_type, fields = SHAPES[i % len(SHAPES)]
                rows.append((record_type, clock[0], fields))
            rollups.mark_records = real_mark if marks else (lambda *_: None)
            try:
                started = time.perf_counter()
                with database.session() as s:
                    telemetry.store_records(s, pks[clock[0] % DEVICES], rows)
                return (time.perf_counter() - started) * 1000
            finally:
                rollups.mark_records = real_mark

        times: dict[bool, list[float]] = {True: [], False: []}
        for n in range(batches):
            for marks in (n % 2 == 0, n % 2 == 1):  # alternate which side goes first
                times[marks].append(batch(marks))
        return {
            "without_ms": statistics.median(times[False]),
            "with_ms": statistics.median(times[True]),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--sizes", default="100,1")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--quick", action="store_true", help="100 batches per side")
    args = parser.parse_args()
    if args.quick:
        args.batches = 100
    configure_argon2(time_cost=1, memory_cost=8, parallelism=1)  # setup only
    kinds = ["sqlite", "postgresql"] if args.postgres else ["sqlite"]
    figures: list[dict[str, object]] = []
    print("| database | records/batch | without marks ms | with marks ms | cost |")
    print("|---|---:|---:|---:|---:|")
    for kind in kinds:
        for size in (int(x) for x in args.sizes.split(",")):
            f = _run(kind, args.batches, size)
            cost = f["with_ms"] / f["without_ms"] - 1
            print(f"| {kind} | {size} | {f['without_ms']:.3f} | {f['with_ms']:.3f} | {cost:+.1%} |")
            name = f"stored batch of {size}, {'SQLite' if kind == 'sqlite' else 'PostgreSQL'}"
            figures += [
                {
                    "name": f"{name}, without marks",
                    "value": f["without_ms"],
                    "unit": "ms",
                    "target": None,
                },
                {
                    "name": f"{name}, with marks",
                    "value": f["with_ms"],
                    "unit": "ms",
                    "target": None,
                    "ratio_to": f"{name}, without marks",
                },
            ]
    print(json.dumps({"bench": "rollup_marks", "figures": figures}))


if __name__ == "__main__":
    main()
