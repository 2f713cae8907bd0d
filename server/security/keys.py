"""The JWT signing keys: in a file outside the database, named by key ids, with rotation.

A leaked database backup must not let anyone mint tokens, so the HS256 keys live in a key
file that only its owner may read (mode 0600): ``var/jwt-keys.json`` by default, or the file
``THINGWIRE_JWT_KEY_FILE`` names, which replicas share (a mounted secret, say). Its shape::

    {"keys": [{"kid": "9f2c…", "secret": "<base64url>", "create_time": "…"},
              {"kid": "41ab…", "secret": "…", "create_time": "…",
               "retire_time": "…", "verify_until": "…"}]}

Exactly one key has no ``retire_time``: the current one, which signs; its ``kid`` goes into
every token's header. `rotate` makes a new current key and retires the old one, which keeps
verifying the tokens it signed until ``verify_until`` (the grace: by default the longest
lifetime of an expiring token we issue), and is refused after it, like an unknown ``kid``.
Keys past their grace are dropped at the next rotation.

Tokens signed before key ids existed have no ``kid``: they are checked with the key named
`LEGACY_KID`, which only an install upgraded from a database-held key has (see
`adopt_database_key`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import sqlalchemy as sa

from server.clock import utc_now
from server.errors import Unauthenticated

__all__ = [
    "DEFAULT_GRACE",
    "LEGACY_KID",
    "MIN_KEY_BYTES",
    "KeyFile",
    "KeyFileError",
    "KeyRing",
    "SigningKey",
    "adopt_database_key",
]

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 32
#: How long a retired key keeps verifying: the refresh token's lifetime, the longest of the
#: tokens that expire (user tokens without an expiry must be re-created after a rotation).
DEFAULT_GRACE = timedelta(days=60)
#: The key id given to a key adopted from the database; tokens without a ``kid`` name it.
LEGACY_KID = "legacy"
#: How often a running server looks at the key file for a rotation made elsewhere.
RELOAD_INTERVAL_SECONDS = 1.0
_OWNER_ONLY = 0o600
_LEGACY_TABLE = "server_secrets"
_LEGACY_NAME = "jwt_hs256"


class KeyFileError(ValueError):
    """The key file cannot be used: unreadable, malformed, or open to other users."""


@dataclass(frozen=True)
class SigningKey:
    """One HS256 key and, once retired, until when it still verifies."""

    kid: str
    secret: bytes
    create_time: datetime
    retire_time: datetime | None = None
    verify_until: datetime | None = None

    @classmethod
    def generate(cls, now: datetime, kid: str | None = None) -> SigningKey:
        """A fresh random key."""
        return cls(kid or secrets.token_hex(8), secrets.token_bytes(MIN_KEY_BYTES), now)

    def verifies_at(self, now: datetime) -> bool:
        """Whether tokens signed with this key are still accepted at ``now``."""
        return self.verify_until is None or now < self.verify_until


@dataclass(frozen=True)
class KeyRing:
    """The current key and the retired ones still in their grace."""

    keys: tuple[SigningKey, ...]

    def __post_init__(self) -> None:
        current = [k for k in self.keys if k.retire_time is None]
        if len(current) != 1:
            raise KeyFileError(f"exactly one key must be current, found {len(current)}")
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids):
            raise KeyFileError("two keys share a kid")
        if any(len(k.secret) < MIN_KEY_BYTES for k in self.keys):
            raise KeyFileError(f"every key must have at least {MIN_KEY_BYTES} bytes")

    @classmethod
    def generate(cls, now: datetime | None = None) -> KeyRing:
        """A ring of one fresh key (a new install, or a test)."""
        return cls((SigningKey.generate(utc_now(now)),))

    @property
    def current(self) -> SigningKey:
        """The key that signs."""
        return next(k for k in self.keys if k.retire_time is None)

    def verifying_secret(self, kid: str | None, now: datetime) -> bytes:
        """The secret for a token's ``kid``; Unauthenticated if unknown or past its grace."""
        wanted = LEGACY_KID if kid is None else kid
        for key in self.keys:
            if key.kid == wanted and key.verifies_at(now):
                return key.secret
        raise Unauthenticated("invalid token")

    def signing_key(self, kid: str, now: datetime) -> SigningKey | None:
        """The key named ``kid`` while it still verifies, else None.

        Re-signing a stored token (a device token's list) with its own key gives the token
        it was; once that key has stopped verifying, the token must move to the current one.
        """
        for key in self.keys:
            if key.kid == kid and key.verifies_at(now):
                return key
        return None

    def rotated(self, now: datetime, grace: timedelta = DEFAULT_GRACE) -> KeyRing:
        """A new current key; the old one verifies for ``grace``; keys past theirs dropped."""
        now = utc_now(now)
        if grace < timedelta(0):
            raise KeyFileError("the grace period must not be negative")
        kept = [k for k in self.keys if k.retire_time is not None and k.verifies_at(now)]
        retired = replace(self.current, retire_time=now, verify_until=now + grace)
        return KeyRing((SigningKey.generate(now), retired, *kept))

    def to_json(self) -> bytes:
        """The key file's content."""
        return orjson.dumps({"keys": [_key_json(k) for k in self.keys]}, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> KeyRing:
        """Parse a key file's content; KeyFileError for anything malformed."""
        try:
            body = orjson.loads(data)
            entries = body["keys"]
            if not isinstance(entries, list):
                raise TypeError("keys is not a list")
            return cls(tuple(_key_of(entry) for entry in entries))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
            if isinstance(exc, KeyFileError):
                raise
            raise KeyFileError(f"malformed key file: {exc}") from None


def _time_text(value: datetime | None) -> str | None:
    return None if value is None else utc_now(value).isoformat()


def _time_of(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("a time must be an ISO 8601 string")
    return utc_now(datetime.fromisoformat(value))


def _key_json(key: SigningKey) -> dict[str, object]:
    entry: dict[str, object] = {
        "kid": key.kid,
        "secret": base64.urlsafe_b64encode(key.secret).decode().rstrip("="),
        "create_time": _time_text(key.create_time),
    }
    if key.retire_time is not None:
        entry["retire_time"] = _time_text(key.retire_time)
        entry["verify_until"] = _time_text(key.verify_until)
    return entry


def _key_of(entry: object) -> SigningKey:
    if not isinstance(entry, Mapping):
        raise TypeError("a key must be an object")
    kid, secret = entry["kid"], entry["secret"]
    if not isinstance(kid, str) or not kid or not isinstance(secret, str):
        raise TypeError("kid and secret must be non-empty strings")
    create_time = _time_of(entry.get("create_time"))
    return SigningKey(
        kid=kid,
        secret=base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4)),
        create_time=create_time or utc_now(),
        retire_time=_time_of(entry.get("retire_time")),
        verify_until=_time_of(entry.get("verify_until")),
    )


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> bool:
    """Write ``path`` whole, mode 0600, atomically; with ``exclusive``, only if it is absent.

    The content goes to a private temporary file first, which is then linked (exclusive:
    fails when another process made the file first) or renamed over the old one. Returns
    False when ``exclusive`` and the file already existed.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _OWNER_ONLY)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if not exclusive:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


class KeyFile:
    """The key file: created on first use, re-read when it changes (a rotation elsewhere)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._ring: KeyRing | None = None
        self._seen: tuple[int, int, int] | None = None
        self._checked = 0.0

    def _stat(self) -> os.stat_result:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise KeyFileError(f"cannot read the key file {self.path}: {exc}") from None
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise KeyFileError(
                f"the key file {self.path} is open to other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); make it 0600 or 0400"
            )
        return info

    def _read(self) -> KeyRing:
        info = self._stat()
        ring = KeyRing.from_json(self.path.read_bytes())
        self._ring, self._seen = ring, (info.st_ino, info.st_mtime_ns, info.st_size)
        return ring

    def load(self, now: datetime | None = None) -> KeyRing:
        """The keys, generating a first key file (0600) when there is none."""
        with self._lock:
            try:
                return self._read()
            except FileNotFoundError:
                pass
            created = _write_private(self.path, KeyRing.generate(now).to_json(), exclusive=True)
            if created:
                log.info("created the JWT key file %s", self.path)
            return self._read()  # ours, or the one another process made first

    def ring(self) -> KeyRing:
        """The keys as the file has them now, looked at no more than once a second."""
        if self._ring is not None and time.monotonic() - self._checked < RELOAD_INTERVAL_SECONDS:
            return self._ring
        with self._lock:
            self._checked = time.monotonic()
            try:
                info = self._stat()
            except FileNotFoundError:
                info = None
            if self._ring is not None and (
                info is None or (info.st_ino, info.st_mtime_ns, info.st_size) == self._seen
            ):
                return self._ring
        try:
            return self.load()
        except KeyFileError:
            if self._ring is None:
                raise
            # A half-edited or loosened file must not stop a running server: keep the keys
            # it had, and say why the new ones were not taken.
            log.exception("the key file %s changed but cannot be used", self.path)
            return self._ring

    def rotate(self, now: datetime | None = None, grace: timedelta = DEFAULT_GRACE) -> KeyRing:
        """Make a new current key; the old one verifies for ``grace`` more (see module doc)."""
        rotated = self.load(now).rotated(utc_now(now), grace)
        _write_private(self.path, rotated.to_json(), exclusive=False)
        with self._lock:
            return self._read()


def adopt_database_key(engine: sa.Engine, key_file: KeyFile, now: datetime | None = None) -> bool:
    """Move a signing key left in the database by an older version out to the key file.

    Before key files, the key was a row of ``server_secrets``. When there is no key file yet,
    that key becomes its only key (kid `LEGACY_KID`), so tokens already issued keep working;
    when a key file exists, it wins and the row is only dropped. Either way the row is
    deleted, and migration 0002 then drops the table. Returns True when a row was found.
    """
    if _LEGACY_TABLE not in sa.inspect(engine).get_table_names():
        return False
    with engine.begin() as connection:
        secret = connection.execute(
            sa.text(f"SELECT value FROM {_LEGACY_TABLE} WHERE name = :name"),  # noqa: S608
            {"name": _LEGACY_NAME},
        ).scalar()
        if secret is None:
            return False
        ring = KeyRing((SigningKey(LEGACY_KID, bytes(secret), utc_now(now)),))
        if _write_private(key_file.path, ring.to_json(), exclusive=True):
            log.warning("moved the JWT key out of the database into %s", key_file.path)
        else:
            log.warning(
                "the database still held a JWT key; %s is used instead and the old key is "
                "dropped (tokens it signed must be renewed)",
                key_file.path,
            )
        connection.execute(
            sa.text(f"DELETE FROM {_LEGACY_TABLE} WHERE name = :name"),  # noqa: S608
            {"name": _LEGACY_NAME},
        )
    return True
