"""Users: creation rules, lookups, password login and its throttle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from server.security import hashing
from server.storage import users
from server.storage.db import Database
from server.storage.models import LoginThrottle, User

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
PASSWORD = "s3cret-Passw0rd"


@pytest.fixture
def ada(database: Database) -> User:
    with database.session() as s:
        return users.create_user(s, "Ada@Example.com", PASSWORD, "ada")


def login(database: Database, name: str, password: str, now: datetime) -> User:
    """One login attempt: reservation and check in their own units of work, as the server."""
    return users.authenticate_password(database, name, password, now)


def fail(database: Database, name: str, now: datetime, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Unauthenticated, match="invalid username or password"):
            login(database, name, "wrong", now)


# --- create_user -------------------------------------------------------------------------


def test_create_user_stores_lowercase_email_and_hashed_password(ada: User) -> None:
    assert ada.id > 0
    assert ada.email == "ada@example.com"
    assert ada.username == "ada"
    assert ada.timezone == "UTC"
    assert ada.password_hash != PASSWORD
    assert hashing.verify_password(ada.password_hash, PASSWORD)
    assert ada.create_time.tzinfo is not None


@pytest.mark.parametrize("email", ["", "ada", "ada@", "@example.com", "a b@example.com", "a@b"])
def test_create_user_rejects_bad_email(database: Database, email: str) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="email"):
        users.create_user(s, email, PASSWORD)


@pytest.mark.parametrize("username", ["", "has space", "dash-ed", "x" * 33, "émile"])
def test_create_user_rejects_bad_username(database: Database, username: str) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="username"):
        users.create_user(s, "x@example.com", PASSWORD, username)


@pytest.mark.parametrize("password", ["", "seven77"])
def test_create_user_rejects_short_passwords(database: Database, password: str) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="at least 8"):
        users.create_user(s, "x@example.com", password)


def test_create_user_rejects_huge_passwords(database: Database) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="at most"):
        users.create_user(s, "x@example.com", "x" * 1025)


def test_duplicate_email_in_any_case_is_rejected(database: Database, ada: User) -> None:
    with database.session() as s, pytest.raises(AlreadyExists, match="email"):
        users.create_user(s, "ADA@example.COM", PASSWORD, "other")


def test_duplicate_username_is_rejected(database: Database, ada: User) -> None:
    with database.session() as s, pytest.raises(AlreadyExists, match="username 'ada'"):
        users.create_user(s, "other@example.com", PASSWORD, "ada")


def test_default_username_comes_from_the_email_and_is_made_unique(database: Database) -> None:
    with database.session() as s:
        first = users.create_user(s, "jean.luc-p@example.com", PASSWORD)
        second = users.create_user(s, "jean.luc-p@example.org", PASSWORD)
        third = users.create_user(s, "jean.luc-p@example.net", PASSWORD)
        long = users.create_user(s, ("y" * 40) + "@example.com", PASSWORD)
        long2 = users.create_user(s, ("y" * 40) + "@example.org", PASSWORD)
    assert first.username == "jean_luc_p"
    assert second.username == "jean_luc_p2"
    assert third.username == "jean_luc_p3"
    assert long.username == "y" * 32
    assert long2.username == "y" * 31 + "2"


def test_get_user(database: Database, ada: User) -> None:
    with database.session() as s:
        assert users.get_user(s, ada.id).username == "ada"
        with pytest.raises(NotFound):
            users.get_user(s, ada.id + 1000)


def test_get_user_by_login_accepts_email_in_any_case_or_username(
    database: Database, ada: User
) -> None:
    with database.session() as s:
        for login in ("ADA@example.com", "ada"):
            found = users.get_user_by_login(s, login)
            assert found is not None
            assert found.id == ada.id
        assert users.get_user_by_login(s, "nobody") is None
        assert users.get_user_by_login(s, "nobody@example.com") is None


def test_deleting_a_user_cascades_to_tokens_and_devices(database: Database, ada: User) -> None:
    from server.storage import devices, tokens
    from server.storage.models import AccessToken, ApiToken, Device, DeviceToken, RefreshToken

    with database.session() as s:
        tokens.create_api_token(s, ada.id, "t", now=T0)
        tokens.issue_refresh_token(s, ada.id, None, T0 + timedelta(days=1), T0)
        tokens.create_access_token(s, ada.id, "a", None, now=T0)
        device, _ = devices.create_device(s, ada.id, "dev", "creds")
        s.add(DeviceToken(id="a" * 24, device_pk=device.id, name="d", resources=[], create_time=T0))
    with database.session() as s:
        s.delete(s.get(User, ada.id))
    with database.session() as s:
        for model in (ApiToken, RefreshToken, AccessToken, Device, DeviceToken):
            assert s.scalar(sa.select(sa.func.count()).select_from(model)) == 0, model


# --- authenticate_password -----------------------------------------------------------------


def test_login_by_email_or_username(database: Database, ada: User) -> None:
    assert login(database, "ada@EXAMPLE.com", PASSWORD, T0).id == ada.id
    assert login(database, "ada", PASSWORD, T0).id == ada.id


def test_wrong_password_and_unknown_user_get_the_same_answer(database: Database, ada: User) -> None:
    with pytest.raises(Unauthenticated) as wrong:
        login(database, "ada", "nope", T0)
    with pytest.raises(Unauthenticated) as unknown:
        login(database, "nobody", PASSWORD, T0)
    assert wrong.value.message == unknown.value.message == "invalid username or password"


def test_login_rehashes_weak_hashes(database: Database, ada: User) -> None:
    old_hash = ada.password_hash
    hashing.configure_argon2(time_cost=2, memory_cost=8, parallelism=1)
    try:
        login(database, "ada", PASSWORD, T0)
        with database.session() as s:
            new_hash = users.get_user(s, ada.id).password_hash
        assert new_hash != old_hash
        assert not hashing.needs_rehash(new_hash)
    finally:
        hashing.configure_argon2(time_cost=1, memory_cost=8, parallelism=1)


def test_a_login_reservation_commits_only_with_its_unit_of_work(
    database: Database, ada: User
) -> None:
    """begin_login commits nothing by itself: a unit of work that fails after it keeps nothing."""

    def reserve_then_fail(s: Session) -> None:
        users.begin_login(s, "ada", "198.51.100.7", T0)
        raise RuntimeError("the rest of the caller's work failed")

    with pytest.raises(RuntimeError):
        database.call(reserve_then_fail)
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(LoginThrottle)) == 0


def test_a_failed_login_stays_counted_after_its_check_raised(database: Database, ada: User) -> None:
    """The effect that must outlive the refusal does: the reservation's own unit committed."""
    fail(database, "ada", T0)
    with database.session() as s:
        failures = s.scalars(sa.select(LoginThrottle.failures)).all()
    assert failures == [1, 1]  # the (client, account) pair and the account
