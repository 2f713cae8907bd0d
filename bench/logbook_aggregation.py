"""Logbook read time over a million points, on SQLite and PostgreSQL.

For each database: a fresh database with one device holding ``--points`` ``obd.bat``
records spread evenly over one day (the seed's record shape, bulk-inserted with the store's
own batch insert), then:

- the aggregated read of that day into 1-minute buckets (1,440 buckets, every point in
  range) as the storage call (one SQL statement): first **freshly ingested**, every minute
  still marked dirty (the worst case: the read takes every sample raw, through the marks);
  then the time to fold the whole day into rollups; then, alternating round by round on the
  same data, the **raw path** (rollups switched off: the read before rollups) and the read
  **with rollups up to date**;
- the same aggregated read as the documented REST request through a real ``thingwire
  serve`` (Envoy + server) on the same database, rollups up to date;
- a raw read of ``--size`` items (storage call and REST).

Each timing is the median of ``--runs`` runs (after one warm-up run, except the
alternating rounds). The last line of output is the JSON of the ``make bench`` contract.

    .venv/bin/python -m bench.logbook_aggregation [--points 1000000] [--runs 7] \
        [--size 10000] [--databases sqlite,postgresql] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from server.security.hashing import configure_argon2
from server.storage import devices, logbook, rollups, users
from server.storage.db import Database
from server.storage.logbook import FieldType
from server.storage.series import Aggregation, Window
from server.storage.telemetry import store_records
from tests.integration.stack import Stack

PG_DSN = os.environ.get(
    "THINGWIRE_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
EMAIL = "bench@example.com"
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway account in a temp database
DAY_START_US = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z
DAY_US = 86_400_000_000
MINUTE_US = 60_000_000
CHUNK = 100_000


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: caches, the statement cache, the first connection
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def fill(database: Database, points: int) -> tuple[int, float]:
    """A user, a device and ``points`` records over one day; (device pk, seconds taken)."""
    with database.session() as s:
        user = users.create_user(s, EMAIL, PASSWORD, "bench")
        device, _ = devices.create_device(s, user.id, "car", "c")
        pk = device.id
    step = DAY_US // points
    started = time.perf_counter()
    for first in range(0, points, CHUNK):
        rows = [
            (
                "obd.bat",
                DAY_START_US + i * step,
                f'{{"voltage":{12 + (i % 300) / 100},"state":"ok","level":{i % 101}}}',
            )
            for i in range(first, min(points, first + CHUNK))
        ]
        with database.session() as s:
            store_records(s, pk, rows)
    elapsed = time.perf_counter() - started
    with database.engine.connect() as connection:
        if database.is_sqlite:
            connection.exec_driver_sql("ANALYZE")
        else:
            connection.commit()
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE telemetry_records"
            )
        connection.commit()
    return pk, elapsed


@contextmanager
def raw_reads() -> Iterator[None]:
    """Reads as before rollups: every aggregated read scans its samples."""
    saved = rollups.record_spans
    rollups.record_spans = lambda window: None
    try:
        yield
    finally:
        rollups.record_spans = saved


def check_same(got: object, want: object) -> None:
    """The same buckets and times; the averages equal up to the rounding of the order in
    which the database summed (PostgreSQL's raw path sums in parallel, in heap order)."""
    assert isinstance(got, list)
    assert isinstance(want, list)
    assert [(b.first_ts, b.last_ts) for b in got] == [(b.first_ts, b.last_ts) for b in want]
    for g, w in zip(got, want, strict=True):
        assert math.isclose(g.value, w.value, rel_tol=1e-12), (g, w)


def fold_everything(database: Database) -> float:
    """Seconds to fold every dirty minute (what the server's task does in the background)."""
    started = time.perf_counter()
    while database.call(lambda s: rollups.fold_records(s, quiet_us=0)):
        pass
    return time.perf_counter() - started


def storage_figures(database: Database, pk: int, runs: int, size: int) -> dict[str, float | str]:
    """The aggregated read three ways, on the same data in one run: freshly ingested (every
    minute dirty, read raw through the marks), then with rollups folded, alternating with
    the raw path (rollups off) round by round; and the raw read of ``size`` items."""
    splits = logbook.field_splits("obd.bat.voltage")
    assert splits is not None
    window = Window(DAY_START_US, DAY_START_US + DAY_US, MINUTE_US)

    def aggregated() -> object:
        with database.session() as s:
            buckets = logbook.read_aggregated(
                s, pk, splits, FieldType.FLOAT, Aggregation.AVG, window, 100_000
            )
        assert len(buckets) == 1440, len(buckets)
        return buckets

    def raw() -> object:
        with database.session() as s:
            samples = logbook.read_raw(
                s, pk, splits, FieldType.FLOAT, window.start_us, window.end_us, size
            )
        assert len(samples) == size
        return samples

    def before() -> object:
        with raw_reads():
            return aggregated()

    fresh_ms = median_ms(aggregated, runs)
    fold_s = fold_everything(database)
    check_same(aggregated(), before())
    rounds: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(runs):
        rounds["before"].append(median_ms(before, 1))
        rounds["after"].append(median_ms(aggregated, 1))
    with database.session() as s:
        extraction, _, dialect = logbook._field(s, pk, splits, FieldType.FLOAT)
        statement = logbook._rollup_select(
            pk,
            splits,
            FieldType.FLOAT,
            Aggregation.AVG,
            window,
            (window.start_us, window.end_us),
            extraction,
            dialect,
        )
        compiled = str(
            statement.compile(
                dialect=s.connection().dialect, compile_kwargs={"literal_binds": True}
            )
        )
        if database.is_sqlite:
            plan = logbook.explain(s, statement)
        else:
            rows = s.connection().exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + compiled).all()
            plan = "\n".join(row[0] for row in rows)
    return {
        "raw_path_ms": statistics.median(rounds["before"]),
        "aggregated_ms": statistics.median(rounds["after"]),
        "fresh_ms": fresh_ms,
        "fold_s": fold_s,
        "raw_ms": median_ms(raw, runs),
        "plan": plan,
    }


def rest_figures(
    workdir: Path, db_url: str, unit_id: str, runs: int, size: int
) -> dict[str, float]:
    stack = Stack(workdir=workdir, db_url=db_url)
    stack.start()
    try:
        with httpx.Client(base_url=stack.base_url, timeout=120) as http:
            login = http.post("/auth/login/", json={"email": EMAIL, "password": PASSWORD})
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            day = {
                "device_id": unit_id,
                "field": "obd.bat.voltage",
                "field_type": "float",
                "from_utc": "2020-01-01T00:00:00Z",
                "to_utc": "2020-01-02T00:00:00Z",
            }

            def aggregated() -> object:
                answer = http.get(
                    "/logbook/storage/read/",
                    params={**day, "aggregation": "avg", "interval": "1m"},
                    headers=headers,
                )
                assert answer.status_code == 200, answer.text
                assert len(answer.json()) == 1440
                return answer

            def raw() -> object:
                answer = http.get(
                    "/logbook/storage/read/", params={**day, "size": str(size)}, headers=headers
                )
                assert answer.status_code == 200, answer.text
                assert len(answer.json()) == size
                return answer

            return {
                "rest_aggregated_ms": median_ms(aggregated, runs),
                "rest_raw_ms": median_ms(raw, runs),
            }
    finally:
        stack.stop()


def bench(kind: str, points: int, runs: int, size: int) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory() as tmp:
        admin = None
        name = f"thingwire_bench_{secrets.token_hex(4)}"
        if kind == "sqlite":
            url = f"sqlite:///{tmp}/bench.db"
        else:
            admin = psycopg.connect(PG_DSN, autocommit=True)
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            info = admin.info
            url = f"postgresql://{info.user}@{info.host}:{info.port}/{name}"
        try:
            database = Database(url)
            database.migrate()
            pk, fill_s = fill(database, points)
            with database.session() as s:
                unit_id = s.get(devices.Device, pk).unit_id  # type: ignore[union-attr]
            figures: dict[str, float | str] = {"insert_s": fill_s}
            figures.update(storage_figures(database, pk, runs, size))
            database.dispose()
            figures.update(rest_figures(Path(tmp) / "stack", url, unit_id, runs, size))
            return figures
        finally:
            if admin is not None:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
                admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="200,000 points, 3 runs")
    args = parser.parse_args()
    if args.quick:
        args.points, args.runs = 200_000, 3
    configure_argon2(time_cost=1, memory_cost=8, parallelism=1)  # setup only
    print(f"{args.points} points over one day; median of {args.runs} runs after a warm-up")
    print(
        "| database | insert s | fold s | 1 day → 1 min buckets, ms: raw path (before) "
        "| rollups (after) | fresh, unfolded | REST (rollups) "
        f"| raw {args.size}: storage ms | REST ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    plans = []
    figures: list[dict[str, object]] = []
    for kind in args.databases.split(","):
        f = bench(kind, args.points, args.runs, args.size)
        print(
            f"| {kind} | {f['insert_s']:.1f} | {f['fold_s']:.1f} | {f['raw_path_ms']:.0f} "
            f"| {f['aggregated_ms']:.1f} | {f['fresh_ms']:.0f} | {f['rest_aggregated_ms']:.1f} "
            f"| {f['raw_ms']:.0f} | {f['rest_raw_ms']:.0f} |",
            flush=True,
        )
        plans.append(f"{kind}:\n{f['plan']}")
        name = "SQLite" if kind == "sqlite" else "PostgreSQL"
        day = f"logbook 1 day into 1-minute buckets, {name}"
        figures += [
            {"name": f"{day}, raw path", "value": f["raw_path_ms"], "unit": "ms", "target": None},
            {
                "name": f"{day}, rollups",
                "value": f["aggregated_ms"],
                "unit": "ms",
                "target": "<= 100 ms",
                "ratio_to": f"{day}, raw path",
            },
            {
                "name": f"{day}, freshly ingested (unfolded)",
                "value": f["fresh_ms"],
                "unit": "ms",
                "target": None,
            },
            {
                "name": f"{day}, REST through Envoy (rollups)",
                "value": f["rest_aggregated_ms"],
                "unit": "ms",
                "target": "<= 100 ms",
            },
        ]
    print("\n\n".join(plans))
    print(json.dumps({"bench": "logbook_aggregation", "figures": figures}))


if __name__ == "__main__":
    main()
