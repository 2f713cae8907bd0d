"""The login throttle: per (client, account) and per account, reserved before the check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.errors import Throttled, Unauthenticated
from server.storage import login_throttle, users
from server.storage.db import Database
from server.storage.models import LoginThrottle, User
from tests.storage.racing import race

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "s3cret-Passw0rd"
HOME, ATTACKER = "203.0.113.7", "198.51.100.66"


@pytest.fixture
def ada(database: Database) -> User:
    with database.session() as s:
        return users.create_user(s, "Ada@Example.com", PASSWORD, "ada")


def login(database: Database, name: str, password: str, now: datetime, client: str = HOME) -> User:
    return users.authenticate_password(database, name, password, now, client=client)


def fail(database: Database, name: str, now: datetime, times: int = 1, client: str = HOME) -> None:
    for _ in range(times):
        with pytest.raises(Unauthenticated, match="invalid username or password"):
            login(database, name, "wrong", now, client)


def row(database: Database, key: str) -> LoginThrottle | None:
    with database.session() as s:
        return s.get(LoginThrottle, key)


def test_five_failures_lock_the_client(database: Database, ada: User) -> None:
    fail(database, "ada", T0, times=5)
    with pytest.raises(Throttled) as locked:
        login(database, "ada", PASSWORD, T0 + timedelta(seconds=1))
    assert locked.value.retry_after == 29


def test_four_failures_do_not_lock(database: Database, ada: User) -> None:
    fail(database, "ada", T0, times=4)
    assert login(database, "ada", PASSWORD, T0).id == ada.id


def test_lock_passes_by_itself(database: Database, ada: User) -> None:
    fail(database, "ada", T0, times=5)
    with pytest.raises(Throttled):
        login(database, "ada", PASSWORD, T0 + timedelta(seconds=29))
    assert login(database, "ada", PASSWORD, T0 + timedelta(seconds=30)).id == ada.id


def test_lock_doubles_with_each_further_failure_up_to_the_cap(
    database: Database, ada: User
) -> None:
    fail(database, "ada", T0, times=5)
    now, expected = T0, 30
    for _ in range(8):
        now += timedelta(seconds=expected)
        fail(database, "ada", now)
        expected = min(expected * 2, 900)
        with pytest.raises(Throttled) as locked:
            login(database, "ada", PASSWORD, now)
        assert locked.value.retry_after == expected
    assert expected == 900


def test_an_attacker_locks_out_only_itself(database: Database, ada: User) -> None:
    """One hostile client, failing each time its lock passes, never keeps the owner out."""
    now = T0
    fail(database, "ada", now, times=login_throttle.CLIENT_LIMIT - 1, client=ATTACKER)
    for _ in range(10):
        fail(database, "ada", now, client=ATTACKER)
        with pytest.raises(Throttled) as locked:
            login(database, "ada", PASSWORD, now, client=ATTACKER)
        assert login(database, "ada", PASSWORD, now, client=HOME).id == ada.id
        now += timedelta(seconds=locked.value.retry_after)


def test_many_clients_together_lock_the_account(database: Database, ada: User) -> None:
    for n in range(login_throttle.ACCOUNT_LIMIT // 4):
        fail(database, "ada", T0, times=4, client=f"10.0.0.{n}")
    fail(database, "ada", T0, times=login_throttle.ACCOUNT_LIMIT % 4, client="10.0.1.1")
    with pytest.raises(Throttled):
        login(database, "ada", PASSWORD, T0, client=HOME)


def _hit_the_account_ceiling(database: Database) -> None:
    for n in range(login_throttle.ACCOUNT_LIMIT // 4):
        fail(database, "ada", T0, times=4, client=f"10.0.0.{n}")
    fail(database, "ada", T0, times=login_throttle.ACCOUNT_LIMIT % 4, client="10.0.1.1")


def test_a_correct_password_never_sets_a_lock(database: Database, ada: User) -> None:
    """Once the account's ceiling had been hit, each correct login used to lock it again:
    its reservation counted as a failure and set a lock that forgiving it left in place."""
    _hit_the_account_ceiling(database)
    with pytest.raises(Throttled) as locked:
        login(database, "ada", PASSWORD, T0, client=HOME)
    now = T0 + timedelta(seconds=locked.value.retry_after)
    for _ in range(3):
        assert login(database, "ada", PASSWORD, now, client=HOME).id == ada.id
        assert login(database, "ada", PASSWORD, now, client=ATTACKER).id == ada.id
    _, account_key = login_throttle.keys_for(f"user:{ada.id}", HOME)
    account = row(database, account_key.key)
    assert account is not None
    assert account.failures == login_throttle.ACCOUNT_LIMIT
    assert account.locked_until is not None
    assert account.locked_until <= now


def test_a_correct_password_keeps_the_escalation_of_failures(database: Database, ada: User) -> None:
    """The correct login undoes only itself: the next failure still doubles the lock."""
    _hit_the_account_ceiling(database)
    now = T0 + login_throttle.LOCK_BASE
    login(database, "ada", PASSWORD, now)
    fail(database, "ada", now, client=ATTACKER)
    with pytest.raises(Throttled) as locked:
        login(database, "ada", PASSWORD, now, client=HOME)
    assert locked.value.retry_after == 2 * login_throttle.LOCK_BASE.total_seconds()


def test_email_and_username_share_one_account(database: Database, ada: User) -> None:
    fail(database, "ada", T0, times=3)
    fail(database, "ADA@example.com", T0, times=2)
    with pytest.raises(Throttled):
        login(database, "ada@example.com", PASSWORD, T0)
    with pytest.raises(Throttled):
        login(database, "ada", PASSWORD, T0)


def test_success_clears_the_client_and_refunds_the_account(database: Database, ada: User) -> None:
    fail(database, "ada", T0, times=4)
    fail(database, "ada", T0, times=2, client=ATTACKER)
    login(database, "ada", PASSWORD, T0)
    client_key, account_key = login_throttle.keys_for(f"user:{ada.id}", HOME)
    assert row(database, client_key.key) is None
    account = row(database, account_key.key)
    assert account is not None
    assert account.failures == 6  # the success itself is refunded, the failures stay
    fail(database, "ada", T0, times=4)
    assert login(database, "ada", PASSWORD, T0).id == ada.id


def test_failures_outside_the_window_are_forgotten(database: Database, ada: User) -> None:
    fail(database, "ada", T0, times=4)
    fail(database, "ada", T0 + login_throttle.WINDOW, times=4)
    assert login(database, "ada", PASSWORD, T0 + login_throttle.WINDOW).id == ada.id


def test_unknown_accounts_are_throttled_alike(database: Database) -> None:
    fail(database, "ghost@example.com", T0, times=5)
    with pytest.raises(Throttled) as locked:
        login(database, "GHOST@example.com", "anything", T0)
    assert locked.value.retry_after == 30


@pytest.mark.parametrize("name", ["ada", "zed_unknown"])
def test_a_username_in_other_case_is_another_login_whether_or_not_it_exists(
    database: Database, ada: User, name: str
) -> None:
    """User names match case-exactly, so their throttle does too: no existence oracle."""
    fail(database, name, T0, times=5)
    with pytest.raises(Unauthenticated):
        login(database, name.upper(), PASSWORD, T0)


def test_throttle_is_per_account(database: Database, ada: User) -> None:
    with database.session() as s:
        users.create_user(s, "bob@example.com", PASSWORD, "bob")
    fail(database, "ada", T0, times=5)
    assert login(database, "bob", PASSWORD, T0).username == "bob"


def test_throttle_is_shared_by_replicas(database: Database, ada: User) -> None:
    replica = Database(database.url)
    try:
        fail(database, "ada", T0, times=3)
        fail(replica, "ada", T0, times=2)
        with pytest.raises(Throttled):
            login(database, "ada", PASSWORD, T0)
    finally:
        replica.dispose()


def test_parallel_attempts_check_no_more_passwords_than_the_limit(
    database: Database, ada: User
) -> None:
    """Attempts are reserved before the password check, so a burst cannot overshoot."""
    outcomes: list[str] = []

    def attempt(db: Database) -> None:
        try:
            db.call(lambda s: users.begin_login(s, "ada", HOME, T0))
            outcomes.append("checked")
        except Throttled:
            outcomes.append("throttled")

    race(database, attempt, contenders=8)
    assert outcomes.count("checked") == login_throttle.CLIENT_LIMIT
    assert outcomes.count("throttled") == 8 - login_throttle.CLIENT_LIMIT


def test_prune_drops_stale_rows(database: Database) -> None:
    fail(database, "old", T0)
    fail(database, "fresh", T0 + timedelta(minutes=20))
    with database.session() as s:
        assert login_throttle.prune(s, T0 + timedelta(minutes=20)) == 2
        remaining = set(s.scalars(sa.select(LoginThrottle.key)))
    assert remaining == {f"c:{HOME}|login:fresh", "a:login:fresh"}
