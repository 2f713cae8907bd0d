"""Devices: id rules, unit ids, push tokens and credentials."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from server.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from server.security import hashing
from server.storage import devices
from server.storage.db import Database
from server.storage.models import Device, DeviceToken, User

UNIT = "6F9619FF-8B86-D011-B42D-00C04FC964FF"


def test_create_device(database: Database, ada: User) -> None:
    with database.session() as s:
        device, push_token = devices.create_device(s, ada.id, "car_1", "creds", "My car", UNIT)
    assert device.device_id == "car_1"
    assert device.unit_id == UNIT.lower()
    assert device.description == "My car"
    assert device.credentials_hash != "creds"
    assert hashing.verify_password(device.credentials_hash, "creds")
    assert device.push_token_hash == hashing.hash_secret(push_token)
    assert device.connected is False
    assert (device.rx_bytes, device.tx_bytes) == (0, 0)
    assert device.connected_time is None
    assert device.ip_address is None
    assert device.create_time.tzinfo is not None


def test_unit_id_defaults_to_a_new_uuid(database: Database, ada: User) -> None:
    with database.session() as s:
        a, token_a = devices.create_device(s, ada.id, "a", "c")
        b, token_b = devices.create_device(s, ada.id, "b", "c")
    assert uuid.UUID(a.unit_id) != uuid.UUID(b.unit_id)
    assert token_a != token_b


@pytest.mark.parametrize("device_id", ["", "x" * 26, "with space", "dash-ed", "dot.ted", "ñ"])
def test_bad_device_id(database: Database, ada: User, device_id: str) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="device id"):
        devices.create_device(s, ada.id, device_id, "c")


def test_longest_device_id_is_accepted(database: Database, ada: User) -> None:
    with database.session() as s:
        device, _ = devices.create_device(s, ada.id, "x" * 25, "c")
    assert device.device_id == "x" * 25


@pytest.mark.parametrize("unit_id", ["nope", "1234", "6F9619FF-8B86-D011-B42D"])
def test_bad_unit_id(database: Database, ada: User, unit_id: str) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="unit_id"):
        devices.create_device(s, ada.id, "d", "c", unit_id=unit_id)


def test_empty_credentials(database: Database, ada: User) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="credentials"):
        devices.create_device(s, ada.id, "d", "")


def test_unknown_owner(database: Database) -> None:
    with database.session() as s, pytest.raises(NotFound, match="user"):
        devices.create_device(s, 4242, "d", "c")


def test_duplicate_device_id_per_user(database: Database, ada: User, bob: User) -> None:
    with database.session() as s:
        devices.create_device(s, ada.id, "d", "c")
    with database.session() as s, pytest.raises(AlreadyExists, match="'d'"):
        devices.create_device(s, ada.id, "d", "c")
    with database.session() as s:  # another owner may use the same device id
        devices.create_device(s, bob.id, "d", "c")


def test_duplicate_unit_id_across_users(database: Database, ada: User, bob: User) -> None:
    with database.session() as s:
        devices.create_device(s, ada.id, "d1", "c", unit_id=UNIT)
    with database.session() as s, pytest.raises(AlreadyExists, match="unit_id"):
        devices.create_device(s, bob.id, "d2", "c", unit_id=UNIT.lower())


def test_get_device(database: Database, ada: User, bob: User) -> None:
    with database.session() as s:
        devices.create_device(s, ada.id, "d", "c")
    with database.session() as s:
        assert devices.get_device(s, ada.id, "d").device_id == "d"
        with pytest.raises(NotFound):
            devices.get_device(s, ada.id, "missing")
        with pytest.raises(NotFound):
            devices.get_device(s, bob.id, "d")  # someone else's device


def test_list_devices(database: Database, ada: User, bob: User) -> None:
    with database.session() as s:
        devices.create_device(s, ada.id, "zeta", "c")
        devices.create_device(s, ada.id, "alpha", "c")
        devices.create_device(s, bob.id, "bobs", "c")
    with database.session() as s:
        assert [d.device_id for d in devices.list_devices(s, ada.id)] == ["alpha", "zeta"]
        assert devices.list_devices(s, 999) == []


def test_authenticate_device(database: Database, ada: User) -> None:
    with database.session() as s:
        devices.create_device(s, ada.id, "d", "creds")
    with database.session() as s:
        assert devices.authenticate_device(s, ada.id, "d", "creds").device_id == "d"
        with pytest.raises(Unauthenticated):
            devices.authenticate_device(s, ada.id, "d", "wrong")
        with pytest.raises(Unauthenticated):
            devices.authenticate_device(s, ada.id, "missing", "creds")


def test_authenticate_push_token(database: Database, ada: User) -> None:
    with database.session() as s:
        device, push_token = devices.create_device(s, ada.id, "d", "c")
    with database.session() as s:
        assert devices.authenticate_push_token(s, push_token).id == device.id
        with pytest.raises(Unauthenticated):
            devices.authenticate_push_token(s, "made-up")


def test_deleting_a_device_cascades_to_its_tokens(database: Database, ada: User) -> None:
    with database.session() as s:
        device, _ = devices.create_device(s, ada.id, "d", "c")
        s.add(
            DeviceToken(
                id="b" * 24,
                device_pk=device.id,
                name="t",
                resources=["temp"],
                create_time=device.create_time,
            )
        )
    with database.session() as s:
        s.delete(s.get(Device, device.id))
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(DeviceToken)) == 0
