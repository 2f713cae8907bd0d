"""Datacooee statistics (min, max, avg) over one input of a million values.

Loads `--points` values of one input in bulk (one executemany per chunk, one value a
second), then times `get_statistics_inputdata_by_inputs` with `aggregation_func=min,max,avg`
over all of them, as the storage query alone (`server.storage.input_data.statistics`, one
SQL statement):

- **freshly loaded**: every hour still marked dirty (the worst case: every value is read
  raw, through the marks);
- then the time to fold every hour into rollups;
- then, alternating round by round on the same data, the **raw path** (rollups switched
  off: the read before rollups) and the read **with rollups up to date**;

and the whole request through a real `thingwire serve` (Envoy, the server, the database),
rollups up to date. Medians of `--runs` runs, on SQLite and on PostgreSQL (a throwaway
database on the server `--postgres` names; `--postgres ""` skips it). The last line of
output is the JSON of the `make bench` contract.

    .venv/bin/python -m bench.datacooee_statistics [--points 1000000] [--runs 5]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--quick]
"""

from __future__ import annotations

import argparse
import json
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
from server.storage import input_data, orgs, rollups
from server.storage.db import Database
from server.storage.input_data import NewPoint, Window
from tests.integration.stack import Stack

CHUNK = 50_000
AGGREGATES = ("min", "max", "avg")


def _median_ms(call: Callable[[], object], runs: int) -> float:
    call()  # warm the caches (page cache, prepared statements)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _load(database: Database, points: int) -> tuple[dict[str, str], str, float]:
    """An organisation with one input holding `points` values; (headers, input id, load s)."""
    with database.session() as s:
        org, api_key = orgs.create_org(s, "bench")
        input_id = orgs.create_input(s, org.id, "bench").id
        org_id = org.id
    start = time.perf_counter()
    for first in range(0, points, CHUNK):
        with database.session() as s:
            input_data.insert_points(
                s,
                input_id,
                (
                    NewPoint(n * 1_000_000, str(n % 1000), float(n % 1000))
                    for n in range(first, min(points, first + CHUNK))
                ),
            )
    if database.url.get_backend_name() == "postgresql":
        with database.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE input_data")
            connection.commit()
    headers = {"organization-id": org_id, "organization-api-key": api_key}
    return headers, input_id, time.perf_counter() - start


@contextmanager
def _raw_reads() -> Iterator[None]:
    """Statistics as before rollups: every value in the window is read."""
    saved = rollups.input_spans
    rollups.input_spans = lambda start, end: None
    try:
        yield
    finally:
        rollups.input_spans = saved


def _storage(database: Database, input_id: str, runs: int) -> dict[str, float]:
    def query() -> object:
        with database.session() as s:
            figures = input_data.statistics(s, [input_id], Window(), AGGREGATES)
        assert figures[input_id]["max"] == 999.0, figures
        return figures

    def before() -> object:
        with _raw_reads():
            return query()

    fresh_ms = _median_ms(query, runs)
    started = time.perf_counter()
    while database.call(lambda s: rollups.fold_input_data(s, quiet_us=0)):
        pass
    fold_s = time.perf_counter() - started
    assert query() == before(), "rollups and the raw path disagree"
    rounds: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(runs):
        rounds["before"].append(_median_ms(before, 1))
        rounds["after"].append(_median_ms(query, 1))
    return {
        "fresh_ms": round(fresh_ms, 1),
        "fold_s": round(fold_s, 1),
        "raw_path_ms": round(statistics.median(rounds["before"]), 1),
        "query_ms": round(statistics.median(rounds["after"]), 1),
    }


def _bench(db_url: str, workdir: Path, points: int, runs: int) -> dict[str, float | str]:
    database = Database(db_url)
    try:
        database.migrate()
        headers, input_id, load_s = _load(database, points)
        figures = _storage(database, input_id, runs)
    finally:
        database.dispose()
    stack = Stack(workdir=workdir, db_url=db_url)
    stack.start()
    try:
        url = (
            f'/api/external/v1/get_statistics_inputdata_by_inputs/?inputs_ids="{input_id}"'
            '&aggregation_func="min,max,avg"'
        )
        with httpx.Client(base_url=stack.base_url, timeout=120) as http:

            def request() -> object:
                answer = http.get(url, headers=headers)
                assert answer.status_code == 200, answer.text
                return answer

            gateway_ms = _median_ms(request, runs)
    finally:
        stack.stop()
    return {
        "database": db_url.split(":", 1)[0],
        "points": points,
        "load_s": round(load_s, 1),
        **figures,
        "gateway_ms": round(gateway_ms, 1),
    }


@contextmanager
def _postgres(dsn: str) -> Iterator[str]:
    """A throwaway database on the PostgreSQL server at `dsn`, dropped afterwards."""
    name = f"thingwire_bench_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help='the PostgreSQL server to use (an admin URL); "" for SQLite only',
    )
    parser.add_argument("--quick", action="store_true", help="200,000 values, 3 runs")
    args = parser.parse_args()
    if args.quick:
        args.points, args.runs = 200_000, 3
    configure_argon2(time_cost=1, memory_cost=8, parallelism=1)  # setup only
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            _bench(f"sqlite:///{tmp}/bench.db", Path(tmp) / "sqlite", args.points, args.runs)
        ]
        if args.postgres:
            with _postgres(args.postgres) as url:
                results.append(_bench(url, Path(tmp) / "postgresql", args.points, args.runs))
    figures: list[dict[str, object]] = []
    for result in results:
        print(json.dumps(result))
        name = "SQLite" if result["database"] == "sqlite" else "PostgreSQL"
        what = f"Datacooee statistics over {result['points']} values, {name}"
        figures += [
            {
                "name": f"{what}, raw path",
                "value": result["raw_path_ms"],
                "unit": "ms",
                "target": None,
            },
            {
                "name": f"{what}, rollups",
                "value": result["query_ms"],
                "unit": "ms",
                "target": "<= 100 ms",
                "ratio_to": f"{what}, raw path",
            },
            {
                "name": f"{what}, freshly loaded (unfolded)",
                "value": result["fresh_ms"],
                "unit": "ms",
                "target": None,
            },
            {
                "name": f"{what}, REST through Envoy (rollups)",
                "value": result["gateway_ms"],
                "unit": "ms",
                "target": "<= 100 ms",
            },
        ]
    print(json.dumps({"bench": "datacooee_statistics", "figures": figures}))


if __name__ == "__main__":
    main()
