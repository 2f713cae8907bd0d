"""Datacooee statistics (min, max, avg) over one input of a million values.

Loads `--points` values of one input in bulk (one executemany per chunk), then times
`get_statistics_inputdata_by_inputs` with `aggregation_func=min,max,avg` over all of them:
the storage query alone (`server.storage.input_data.statistics`, one SQL statement), and the
whole request through a real `thingwire serve` (Envoy, the server, the database). Reports
the median of `--runs` runs of each, on SQLite and on PostgreSQL (a throwaway database on
the server `--postgres` names; `--postgres ""` skips it).

    .venv/bin/python -m bench.datacooee_statistics [--points 1000000] [--runs 5]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
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

from server.storage import input_data
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


def _load(stack: Stack, points: int) -> tuple[dict[str, str], str, float]:
    """An organisation with one input holding `points` values; (headers, input id, load s)."""
    org = stack.cli_json("org", "create", "--name", "bench")
    input_id = stack.cli_json("input", "create", "--org", org["id"], "--name", "bench")["id"]
    database = Database(stack.db_url)
    start = time.perf_counter()
    try:
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
    finally:
        database.dispose()
    headers = {"organization-id": org["id"], "organization-api-key": org["api_key"]}
    return headers, input_id, time.perf_counter() - start


def _bench(db_url: str, workdir: Path, points: int, runs: int) -> dict[str, float | str]:
    stack = Stack(workdir=workdir, db_url=db_url)
    stack.start()
    try:
        headers, input_id, load_s = _load(stack, points)
        database = Database(db_url)
        try:

            def query() -> object:
                with database.session() as s:
                    figures = input_data.statistics(s, [input_id], Window(), AGGREGATES)
                assert figures[input_id]["max"] == 999.0, figures
                return figures

            query_ms = _median_ms(query, runs)
        finally:
            database.dispose()
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
        "query_ms": round(query_ms, 1),
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            _bench(f"sqlite:///{tmp}/bench.db", Path(tmp) / "sqlite", args.points, args.runs)
        ]
        if args.postgres:
            with _postgres(args.postgres) as url:
                results.append(_bench(url, Path(tmp) / "postgresql", args.points, args.runs))
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
