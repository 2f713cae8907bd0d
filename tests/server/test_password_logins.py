"""Password logins: throttled per client through a real server; bounded argon2 queue."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from thingwire.auth.v1 import auth_pb2

from server.auth import passwords
from server.auth.passwords import PasswordLogins
from server.errors import Throttled, Unauthenticated
from server.storage import login_throttle, users
from server.storage.db import Database
from server.storage.models import LoginThrottle, User
from tests.server.conftest import ServerUnderTest

PASSWORD = "per-client-password"


def login_from(
    srv: ServerUnderTest, address: str, password: str, *, direct: bool = False
) -> grpc.StatusCode:
    """Log in as pat, through the gateway's socket from `address`, or `direct` on the TCP
    port claiming to be `address`."""
    stub = srv.auth if direct else srv.gateway_auth
    try:
        stub.Login(
            auth_pb2.LoginRequest(email="pat@example.com", password=password),
            metadata=(("x-forwarded-for", address),),
            timeout=10,
        )
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.fixture
def pat(grpc_server: ServerUnderTest) -> ServerUnderTest:
    with grpc_server.database.session() as s:
        users.create_user(s, "pat@example.com", PASSWORD, "pat")
    return grpc_server


def test_an_attacker_address_does_not_lock_the_owner_out(pat: ServerUnderTest) -> None:
    for _ in range(5):
        assert login_from(pat, "198.51.100.66", "guess") == grpc.StatusCode.UNAUTHENTICATED
    assert login_from(pat, "198.51.100.66", PASSWORD) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert login_from(pat, "203.0.113.7", PASSWORD) == grpc.StatusCode.OK


def test_a_direct_caller_cannot_escape_its_lock_by_naming_other_addresses(
    pat: ServerUnderTest,
) -> None:
    """On the TCP port x-forwarded-for is anyone's to write: the throttle ignores it there."""
    for n in range(5):
        forged = f"198.51.100.{n}"
        assert login_from(pat, forged, "guess", direct=True) == grpc.StatusCode.UNAUTHENTICATED
    forged = "198.51.100.99"
    assert login_from(pat, forged, PASSWORD, direct=True) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_direct_caller_cannot_pin_a_lock_on_another_address(pat: ServerUnderTest) -> None:
    for _ in range(5):
        assert login_from(pat, "203.0.113.7", "guess", direct=True) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
    assert login_from(pat, "203.0.113.7", PASSWORD) == grpc.StatusCode.OK


def test_logins_beyond_capacity_are_refused_at_once(database: Database) -> None:
    logins = PasswordLogins(database, workers=1, max_waiting=0)

    async def two_at_once() -> list[User | BaseException]:
        now = datetime.now(UTC)
        return list(
            await asyncio.gather(
                logins.check("a@example.com", "x" * 8, "c", now),
                logins.check("b@example.com", "x" * 8, "c", now),
                return_exceptions=True,
            )
        )

    try:
        first, second = asyncio.run(two_at_once())
    finally:
        logins.close()
    assert isinstance(second, Throttled)
    assert second.retry_after == 1
    assert not isinstance(first, Throttled)  # it ran: an unknown account, so Unauthenticated


def test_one_client_cannot_take_every_password_check(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """120 concurrent bad logins from one address used to leave none for anyone else."""
    release = threading.Event()

    def held_check(password_hash: str | None, password: str) -> bool:
        release.wait(10)  # each check holds its slot until the test lets go
        return False

    monkeypatch.setattr(passwords, "verify_password", held_check)
    logins = PasswordLogins(database, workers=1)

    async def flood_then_other() -> tuple[list[User | BaseException], User | BaseException]:
        now = datetime.now(UTC)
        flood = [
            asyncio.create_task(logins.check(f"x{n}@example.com", "x" * 8, "198.51.100.66", now))
            for n in range(120)
        ]
        await asyncio.sleep(0)  # let every flood task claim (or be refused) a slot
        other = asyncio.create_task(logins.check("pat@example.com", "x" * 8, "203.0.113.7", now))
        await asyncio.sleep(0)
        refused_at_once = other.done()
        release.set()
        outcomes = list(await asyncio.gather(*flood, return_exceptions=True))
        result = (await asyncio.gather(other, return_exceptions=True))[0]
        assert not refused_at_once
        return outcomes, result

    try:
        flood, other = asyncio.run(flood_then_other())
    finally:
        release.set()
        logins.close()
    assert isinstance(other, Unauthenticated)  # it was checked: unknown account
    checked = [o for o in flood if not isinstance(o, Throttled)]
    assert len(checked) == passwords.MAX_CHECKS_PER_CLIENT


def test_a_login_cancelled_mid_check_leaves_no_lock(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At its ceiling, an account's next reservation locks it; a login cancelled while its
    password is checked must withdraw that reservation, lock included (it never did)."""
    started, release = threading.Event(), threading.Event()

    def held_check(password_hash: str | None, password: str) -> bool:
        started.set()
        release.wait(10)
        return True

    now = datetime.now(UTC)
    with database.session() as s:
        ada = users.create_user(s, "ada@example.com", "x" * 8, "ada")
    account_key = f"a:user:{ada.id}"
    with database.session() as s:
        s.add(
            LoginThrottle(
                key=account_key, failures=login_throttle.ACCOUNT_LIMIT - 1, window_start=now
            )
        )
    monkeypatch.setattr(passwords, "verify_password", held_check)
    logins = PasswordLogins(database, workers=1)

    async def cancel_mid_check() -> None:
        task = asyncio.create_task(logins.check("ada@example.com", "x" * 8, "c", now))
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await logins.settled()

    try:
        asyncio.run(cancel_mid_check())
    finally:
        release.set()
        logins.close()
    with database.session() as s:
        stored = s.get(LoginThrottle, account_key)
        assert stored is not None
        assert stored.locked_until is None
        assert stored.failures == login_throttle.ACCOUNT_LIMIT - 1
        client = s.get(LoginThrottle, f"c:c|user:{ada.id}")
        assert client is None or client.failures == 0


def _at_the_ceiling(database: Database, now: datetime) -> User:
    """ada, whose account has had its ceiling of failures and whose lock has run out."""
    with database.session() as s:
        ada = users.create_user(s, "ada@example.com", "x" * 8, "ada")
    with database.session() as s:
        s.add(
            LoginThrottle(
                key=f"a:user:{ada.id}",
                failures=login_throttle.ACCOUNT_LIMIT,
                window_start=now - timedelta(minutes=5),
                locked_until=now - timedelta(minutes=1),
            )
        )
    return ada


def _six_at_once(database: Database, password: str, checked: list[str]) -> list[object]:
    """Six logins of ada at once, from six addresses, with a check that takes a moment."""

    def slow_check(password_hash: str | None, given: str) -> bool:
        checked.append(given)
        time.sleep(0.05)
        return given == "x" * 8

    logins = PasswordLogins(database, workers=2)
    now = datetime.now(UTC)
    _at_the_ceiling(database, now)

    async def together() -> list[object]:
        return list(
            await asyncio.gather(
                *(
                    logins.check("ada@example.com", password, f"198.51.100.{n}", now)
                    for n in range(6)
                ),
                return_exceptions=True,
            )
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "verify_password", slow_check)
        try:
            return asyncio.run(together())
        finally:
            logins.close()


def test_parallel_right_passwords_at_the_ceiling_all_log_in(database: Database) -> None:
    """Each reservation locks the account while its password is checked; the owner's other
    logins wait for that check instead of meeting its lock as a 429."""
    checked: list[str] = []
    outcomes = _six_at_once(database, "x" * 8, checked)
    assert all(isinstance(outcome, User) for outcome in outcomes), outcomes
    assert len(checked) == 6


def test_parallel_wrong_passwords_at_the_ceiling_check_only_one(database: Database) -> None:
    """The wait gives guessers nothing: a wrong password's lock stays and refuses the rest."""
    checked: list[str] = []
    outcomes = _six_at_once(database, "wrong-guess", checked)
    assert len(checked) == 1
    assert sum(isinstance(outcome, Unauthenticated) for outcome in outcomes) == 1
    assert sum(isinstance(outcome, Throttled) for outcome in outcomes) == 5
