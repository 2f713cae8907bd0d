"""Database fixtures shared by every suite: each test runs on SQLite and on PostgreSQL.

PostgreSQL must be reachable (CI starts it; locally 127.0.0.1:5432, user ``postgres``, trust
auth). Set ``THINGWIRE_TEST_PG_DSN`` to use another server. Every database the suite creates
is named ``thingwire_test_<hex>`` and dropped ``WITH (FORCE)`` when it is no longer needed.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from server.security.hashing import configure_argon2
from server.storage.db import Database

# Argon2 at its cheapest: the suite checks behaviour, not hash strength.
configure_argon2(time_cost=1, memory_cost=8, parallelism=1)

PG_DSN = os.environ.get(
    "THINGWIRE_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
DB_KINDS = ["sqlite", "postgresql"]


class PostgresAdmin:
    """Creates and drops throwaway databases on the test PostgreSQL server."""

    def __init__(self, dsn: str) -> None:
        try:
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            pytest.fail(
                f"PostgreSQL is not reachable with {dsn!r} ({exc}). The suite runs on SQLite "
                "and PostgreSQL; start PostgreSQL (CI does) or set THINGWIRE_TEST_PG_DSN.",
                pytrace=False,
            )
        info = self._conn.info
        self._base = f"postgresql://{info.user}@{info.host}:{info.port}"
        self._created: list[str] = []

    def create(self, template: str | None = None) -> str:
        """A new empty (or copied from ``template``) database; returns its URL."""
        name = f"thingwire_test_{secrets.token_hex(6)}"
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        self._conn.execute(stmt)
        self._created.append(name)
        return f"{self._base}/{name}"

    def drop(self, url: str) -> None:
        """Drop the database at ``url``, closing any connection still open to it."""
        name = url.rsplit("/", 1)[1]
        self._conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if name in self._created:
            self._created.remove(name)

    def close(self) -> None:
        for name in list(self._created):
            self.drop(f"{self._base}/{name}")
        self._conn.close()


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[PostgresAdmin]:
    """The PostgreSQL server used by the suite; fails (never skips) when it is down."""
    admin = PostgresAdmin(PG_DSN)
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture(scope="session")
def _migrated_templates(
    postgres_admin: PostgresAdmin, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """One migrated database per kind, reused by each test (faster than migrating each)."""
    sqlite_path = tmp_path_factory.mktemp("template") / "template.db"
    urls = {"sqlite": f"sqlite:///{sqlite_path}", "postgresql": postgres_admin.create()}
    for url in urls.values():
        db = Database(url)
        db.migrate()
        db.dispose()
    return urls


@pytest.fixture(scope="module", params=DB_KINDS)
def db_url_factory(
    request: pytest.FixtureRequest,
    postgres_admin: PostgresAdmin,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., str]]:
    """A factory of fresh, empty (unmigrated) database URLs of one kind, per module.

    Call it as ``factory()`` or ``factory(workdir)`` (SQLite files go there). Databases are
    dropped when the module finishes.
    """
    kind: str = request.param
    created: list[str] = []

    def factory(workdir: Path | None = None) -> str:
        if kind == "sqlite":
            directory = workdir or tmp_path_factory.mktemp("db")
            url = f"sqlite:///{Path(directory) / f'thingwire_{secrets.token_hex(4)}.db'}"
        else:
            url = postgres_admin.create()
        created.append(url)
        return url

    yield factory
    for url in created:
        if url.startswith("postgresql"):
            postgres_admin.drop(url)


@pytest.fixture(params=DB_KINDS)
def database_url(
    request: pytest.FixtureRequest, postgres_admin: PostgresAdmin, tmp_path: Path
) -> Iterator[str]:
    """A fresh, empty (unmigrated) database URL, once per kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'thingwire.db'}"
        return
    url = postgres_admin.create()
    yield url
    postgres_admin.drop(url)


def _empty_postgres(url: str) -> None:
    """Delete every row but Alembic's: far cheaper than TRUNCATE or a new database per test.

    ``session_replication_role = replica`` skips FK triggers, so the order does not matter.
    """
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{PG_DSN} dbname={name}") as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version'"
            )
        ]
        # A transaction leaked by an earlier test would block us; fail rather than hang.
        conn.execute("SET LOCAL lock_timeout = '10s'")
        conn.execute("SET LOCAL session_replication_role = replica")
        for table in tables:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))


@pytest.fixture(params=DB_KINDS)
def database(
    request: pytest.FixtureRequest, _migrated_templates: dict[str, str], tmp_path: Path
) -> Iterator[Database]:
    """A migrated, empty ``Database`` of each kind, private to the test.

    SQLite gets a copy of a migrated file; PostgreSQL reuses one migrated database per session,
    emptied before each test.
    """
    if request.param == "sqlite":
        template = _migrated_templates["sqlite"].removeprefix("sqlite:///")
        path = tmp_path / "thingwire.db"
        shutil.copyfile(template, path)
        url = f"sqlite:///{path}"
    else:
        url = _migrated_templates["postgresql"]
        _empty_postgres(url)
    db = Database(url)
    try:
        yield db
    finally:
        db.dispose()
