"""The Devices API's storage: adding under a limit, deleting, and device tokens."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from server.storage import devices
from server.storage.db import Database
from server.storage.models import Device, DeviceToken, User
from server.storage.tokens import device_tokens
from tests.storage.racing import race

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)


def add(database: Database, user: User, device_id: str, limit: int = 0) -> Device:
    with database.session() as s:
        return devices.add_device(s, user.id, device_id, "creds", "a board", limit)


def test_add_device_stores_it_with_its_credentials_hashed(database: Database, ada: User) -> None:
    device = add(database, ada, "nodemcu")
    with database.session() as s:
        stored = devices.get_device(s, ada.id, "nodemcu")
    assert stored.id == device.id
    assert stored.description == "a board"
    assert stored.credentials_hash != "creds"


@pytest.mark.parametrize("device_id", ["", "a" * 26, "bad-id", "../etc", "a b", "é"])
def test_add_device_refuses_a_bad_id(database: Database, ada: User, device_id: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid device id"):
        add(database, ada, device_id)


def test_add_device_refuses_empty_credentials(database: Database, ada: User) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="device_credentials"):
        devices.add_device(s, ada.id, "d", "", "", 0)


def test_add_device_refuses_a_duplicate(database: Database, ada: User, bob: User) -> None:
    add(database, ada, "d")
    with pytest.raises(AlreadyExists):
        add(database, ada, "d")
    add(database, bob, "d")  # ids are unique per owner only


def test_add_device_stops_at_the_limit(database: Database, ada: User, bob: User) -> None:
    add(database, ada, "one", limit=2)
    add(database, ada, "two", limit=2)
    with pytest.raises(InvalidArgument, match="limit of 2 devices"):
        add(database, ada, "three", limit=2)
    add(database, bob, "three", limit=2)  # the limit is per account


def test_no_limit_when_zero(database: Database, ada: User) -> None:
    for i in range(5):
        add(database, ada, f"d{i}", limit=0)


def test_add_device_for_an_unknown_user_is_not_found(database: Database) -> None:
    with database.session() as s, pytest.raises(NotFound):
        devices.add_device(s, 999, "d", "creds", "", 1)


def test_concurrent_adds_never_pass_the_limit(database: Database, ada: User) -> None:
    """Eight adds at once (two engines, as replicas) for the last two places: two win."""
    add(database, ada, "first", limit=3)
    outcomes: list[str] = []
    lock = threading.Lock()
    counter = iter(range(100))

    def attempt(db: Database) -> None:
        with lock:
            name = f"racer{next(counter)}"
        try:
            with db.session() as s:
                devices.add_device(s, ada.id, name, "creds", "", 3)
            outcome = "added"
        except InvalidArgument:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    race(database, attempt, contenders=8)
    assert sorted(outcomes) == ["added"] * 2 + ["refused"] * 6
    with database.session() as s:
        assert len(devices.list_devices(s, ada.id)) == 3


def test_list_devices_filters_by_id(database: Database, ada: User) -> None:
    add(database, ada, "b")
    add(database, ada, "a")
    with database.session() as s:
        assert [d.device_id for d in devices.list_devices(s, ada.id)] == ["a", "b"]
        assert [d.device_id for d in devices.list_devices(s, ada.id, "b")] == ["b"]
        assert devices.list_devices(s, ada.id, "zzz") == []
        with pytest.raises(InvalidArgument):
            devices.list_devices(s, ada.id, "no/such")


def test_delete_device_cascades_to_its_tokens_and_link_secret(
    database: Database, ada: User
) -> None:
    device = add(database, ada, "d")
    with database.session() as s:
        token = device_tokens.create_device_token(s, ada.id, "d", "t", None, None, NOW, "k")
        s.get(Device, device.id).link_secret_hash = "0" * 64  # type: ignore[union-attr]
    with database.session() as s:
        devices.delete_device(s, ada.id, "d")
    with database.session() as s:
        assert s.get(DeviceToken, token.id) is None
        assert s.get(Device, device.id) is None


def test_delete_a_connected_device_is_refused(database: Database, ada: User) -> None:
    device = add(database, ada, "d")
    with database.session() as s:
        s.execute(sa.update(Device).where(Device.id == device.id).values(connected=True))
    with database.session() as s, pytest.raises(FailedPrecondition, match="is connected"):
        devices.delete_device(s, ada.id, "d")


def test_delete_another_users_device_is_not_found(database: Database, ada: User, bob: User) -> None:
    add(database, bob, "d")
    with database.session() as s, pytest.raises(NotFound):
        devices.delete_device(s, ada.id, "d")
    with database.session() as s:
        assert devices.get_device(s, bob.id, "d")


# --- device tokens -----------------------------------------------------------------------


def test_token_ids_are_24_hex_digits(database: Database, ada: User) -> None:
    add(database, ada, "d")
    with database.session() as s:
        token = device_tokens.create_device_token(
            s, ada.id, "d", "Door", ["open", "close", "open"], NOW + timedelta(days=1), NOW, "k"
        )
    assert len(token.id) == 24
    assert int(token.id, 16) >= 0
    assert token.resources == ["open", "close"]
    assert token.kid == "k"
    assert token.create_time == NOW


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ([], "at least one resource"),
        ("open", "must be a list"),
        ([1], "must be a list"),
        ([""], "names of 1 to"),
        (["x" * 101], "names of 1 to"),
        (["r"] * 101, "at most 100"),
        (object(), "must be a list"),
    ],
)
def test_token_resources_of_a_bad_shape_are_refused(
    database: Database, ada: User, resources: object, message: str
) -> None:
    add(database, ada, "d")
    with database.session() as s, pytest.raises(InvalidArgument, match=message):
        device_tokens.create_device_token(s, ada.id, "d", "t", resources, None, NOW, "k")


def test_a_token_needs_a_name_and_a_future_expiry(database: Database, ada: User) -> None:
    add(database, ada, "d")
    with database.session() as s, pytest.raises(InvalidArgument, match="name is required"):
        device_tokens.create_device_token(s, ada.id, "d", " ", None, None, NOW, "k")
    with database.session() as s, pytest.raises(InvalidArgument, match="in the future"):
        device_tokens.create_device_token(s, ada.id, "d", "t", None, NOW, NOW, "k")


def test_tokens_of_an_unknown_or_foreign_device_are_not_found(
    database: Database, ada: User, bob: User
) -> None:
    add(database, bob, "d")
    with database.session() as s, pytest.raises(NotFound):
        device_tokens.create_device_token(s, ada.id, "d", "t", None, None, NOW, "k")
    with database.session() as s, pytest.raises(NotFound):
        device_tokens.list_device_tokens(s, ada.id, "d")


def test_list_and_delete_tokens(database: Database, ada: User) -> None:
    add(database, ada, "d")
    add(database, ada, "other")
    with database.session() as s:
        first = device_tokens.create_device_token(s, ada.id, "d", "a", None, None, NOW, "k")
        second = device_tokens.create_device_token(
            s, ada.id, "d", "b", None, None, NOW + timedelta(seconds=1), "k"
        )
    with database.session() as s:
        assert [t.id for t in device_tokens.list_device_tokens(s, ada.id, "d")] == [
            first.id,
            second.id,
        ]
        # A token is deleted only through its own device.
        with pytest.raises(NotFound):
            device_tokens.delete_device_token(s, ada.id, "other", first.id)
    with database.session() as s:
        device_tokens.delete_device_token(s, ada.id, "d", first.id)
    with database.session() as s:
        assert [t.id for t in device_tokens.list_device_tokens(s, ada.id, "d")] == [second.id]
        with pytest.raises(NotFound):
            device_tokens.delete_device_token(s, ada.id, "d", first.id)


def test_an_active_token_is_found_with_its_device_and_owner(database: Database, ada: User) -> None:
    add(database, ada, "d")
    with database.session() as s:
        token = device_tokens.create_device_token(
            s, ada.id, "d", "t", None, NOW + timedelta(hours=1), NOW, "k"
        )
    with database.session() as s:
        active = device_tokens.get_active_device_token(s, token.id, NOW)
        assert (active.device.device_id, active.owner.username) == ("d", "ada")
        with pytest.raises(Unauthenticated):
            device_tokens.get_active_device_token(s, token.id, NOW + timedelta(hours=1))
        with pytest.raises(Unauthenticated):
            device_tokens.get_active_device_token(s, "0" * 24, NOW)


@pytest.mark.parametrize("device_id", ["d\x00", "", "../d", 5])
def test_ids_no_device_can_have_are_not_found_without_a_query(
    database: Database, ada: User, device_id: object
) -> None:
    """PostgreSQL refuses a NUL in text: such an id must never reach SQL."""
    add(database, ada, "d")
    with database.session() as s, pytest.raises(NotFound):
        devices.get_device(s, ada.id, device_id)  # type: ignore[arg-type]
    with database.session() as s, pytest.raises(NotFound):
        device_tokens.delete_device_token(s, ada.id, "d", "\x00" * 24)
    with database.session() as s, pytest.raises(Unauthenticated):
        device_tokens.get_active_device_token(s, "\x00", NOW)
