"""The signing key file: private, shared, rotated; and a key left in the database moved out."""

from __future__ import annotations

import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from alembic import command

from server.config import Settings
from server.errors import Unauthenticated
from server.migrations import alembic_config
from server.security import keys as keys_module
from server.security.jwt_tokens import TokenSigner
from server.security.keys import (
    LEGACY_KID,
    KeyFile,
    KeyFileError,
    KeyRing,
    SigningKey,
    adopt_database_key,
)
from server.state import open_database
from server.storage.db import Database

T0 = datetime(2030, 1, 1, tzinfo=UTC)
OLD_SECRET = b"k" * 32


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "jwt-keys.json"
    ring = KeyFile(path).load(T0)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert len(ring.current.secret) >= 32
    assert KeyFile(path).load() == ring  # read back, not made again


def test_replicas_starting_together_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "jwt-keys.json"
    barrier, rings = threading.Barrier(4), []

    def start() -> None:
        barrier.wait()
        rings.append(KeyFile(path).load(T0))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({ring.current.kid for ring in rings}) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["jwt-keys.json"]  # no temporary file left


def test_a_key_file_open_to_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwt-keys.json"
    KeyFile(path).load(T0)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="0644"):
        KeyFile(path).load()


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"{}",
        b'{"keys": []}',  # no current key
        b'{"keys": [{"kid": "a", "secret": "c2hvcnQ"}]}',  # too short
        b'{"keys": [{"kid": 1, "secret": "x"}]}',
    ],
)
def test_a_malformed_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "jwt-keys.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        KeyFile(path).load()


def test_rotation_keeps_the_old_key_for_its_grace_then_drops_it(tmp_path: Path) -> None:
    key_file = KeyFile(tmp_path / "jwt-keys.json")
    first = key_file.load(T0).current
    second = key_file.rotate(T0, timedelta(days=1)).current
    ring = key_file.ring()
    assert ring.current == second
    assert ring.verifying_secret(first.kid, T0 + timedelta(hours=23)) == first.secret
    with pytest.raises(Unauthenticated):
        ring.verifying_secret(first.kid, T0 + timedelta(days=1))
    third = key_file.rotate(T0 + timedelta(days=2), timedelta(days=1)).current
    assert [k.kid for k in key_file.ring().keys] == [third.kid, second.kid]
    assert mode(key_file.path) == 0o600


def test_a_running_server_picks_up_a_rotation_made_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "RELOAD_INTERVAL_SECONDS", 0.0)
    path = tmp_path / "jwt-keys.json"
    server, operator = KeyFile(path), KeyFile(path)
    before = server.load(T0).current
    after = operator.rotate(T0).current  # `thingwire key rotate` in another process
    assert server.ring().current == after
    assert server.ring().verifying_secret(before.kid, T0) == before.secret


def test_a_broken_rotation_does_not_stop_a_running_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "RELOAD_INTERVAL_SECONDS", 0.0)
    key_file = KeyFile(tmp_path / "jwt-keys.json")
    ring = key_file.load(T0)
    key_file.path.write_bytes(b"half written")
    assert key_file.ring() == ring


def test_the_key_file_is_configured_by_thingwire_jwt_key_file() -> None:
    assert Settings.from_env({}).jwt_key_file == Path("var/jwt-keys.json")
    chosen = Settings.from_env({"THINGWIRE_JWT_KEY_FILE": "/run/secrets/jwt.json"})
    assert chosen.jwt_key_file == Path("/run/secrets/jwt.json")


# --- Upgrades: the key an older version kept in the database ---------------------------------


def at_revision_0001_with_a_key(url: str) -> Database:
    """A database as the previous version left it: its JWT key in server_secrets."""
    db = Database(url)
    with db.engine.begin() as conn:
        config = alembic_config(db.url)
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(
            sa.text("INSERT INTO server_secrets (name, value) VALUES ('jwt_hs256', :v)"),
            {"v": OLD_SECRET},
        )
    return db


def old_style_token(now: datetime) -> str:
    """What the previous version signed: no kid, the database's key."""
    iat = int(now.timestamp())
    return jwt.encode({"iat": iat, "exp": iat + 7200, "usr": "ada"}, OLD_SECRET, "HS256")


def tables(db: Database) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def test_an_upgrade_moves_the_key_out_and_old_tokens_keep_working(
    database_url: str, tmp_path: Path
) -> None:
    at_revision_0001_with_a_key(database_url).dispose()
    settings = Settings(db_url=database_url, jwt_key_file=tmp_path / "var" / "jwt-keys.json")
    db = open_database(settings)
    try:
        assert "server_secrets" not in tables(db)  # migration 0002 dropped it once empty
        ring = KeyFile(settings.jwt_key_file).load()
        assert mode(settings.jwt_key_file) == 0o600
        assert ring.current.kid == LEGACY_KID
        now = datetime.now(UTC)  # PyJWT checks that iat is not ahead of the real clock
        claims = TokenSigner(ring).verify(old_style_token(now), now)
        assert claims.username == "ada"
    finally:
        db.dispose()


def test_a_configured_key_file_wins_over_the_database_key(
    database_url: str, tmp_path: Path
) -> None:
    key_file = KeyFile(tmp_path / "shared.json")
    configured = key_file.load(T0)
    db = at_revision_0001_with_a_key(database_url)
    try:
        assert adopt_database_key(db.engine, key_file)
        assert key_file.load() == configured
        with db.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT COUNT(*) FROM server_secrets")) == 0
        assert not adopt_database_key(db.engine, key_file)  # nothing left to move
    finally:
        db.dispose()


def test_migration_0002_never_drops_a_key_that_was_not_moved(database_url: str) -> None:
    db = at_revision_0001_with_a_key(database_url)
    try:
        with pytest.raises(RuntimeError, match="key file"):
            db.migrate()
        with db.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT value FROM server_secrets")) == OLD_SECRET
    finally:
        db.dispose()


def test_a_token_without_kid_is_refused_on_an_install_that_never_had_a_database_key() -> None:
    ring = KeyRing((SigningKey("k1", OLD_SECRET, T0),))  # the very secret, under a kid
    now = datetime.now(UTC)
    with pytest.raises(Unauthenticated):
        TokenSigner(ring).verify(old_style_token(now), now)


# --- The database files --------------------------------------------------------------------


def test_sqlite_files_are_created_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "thingwire.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.migrate()
        with db.engine.connect() as conn:  # WAL mode: -wal and -shm exist while connected
            conn.execute(sa.text("SELECT 1"))
            files = {p.name: mode(p) for p in path.parent.iterdir()}
    finally:
        db.dispose()
    assert files == {"thingwire.db": 0o600, "thingwire.db-wal": 0o600, "thingwire.db-shm": 0o600}
    assert mode(path.parent) == 0o700
