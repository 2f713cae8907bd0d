"""Datacooee organisations, inputs and assets."""

from __future__ import annotations

import re

import pytest

from server.errors import InvalidArgument, NotFound, Unauthenticated
from server.storage import orgs
from server.storage.db import Database
from server.storage.models import Organization


@pytest.fixture
def acme(database: Database) -> tuple[Organization, str]:
    with database.session() as s:
        return orgs.create_org(s, "acme")


def test_create_org(acme: tuple[Organization, str]) -> None:
    org, api_key = acme
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", org.id)
    assert org.name == "acme"
    assert api_key not in org.api_key_hash
    assert len(api_key) >= 43


def test_org_name_required(database: Database) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="name"):
        orgs.create_org(s, "  ")


def test_authenticate_org(database: Database, acme: tuple[Organization, str]) -> None:
    org, api_key = acme
    with database.session() as s:
        _, other_key = orgs.create_org(s, "other")
        assert orgs.authenticate_org(s, org.id, api_key).id == org.id
        for org_id, key in [(org.id, "wrong"), (org.id, other_key), ("nope", api_key), ("", "")]:
            with pytest.raises(Unauthenticated):
                orgs.authenticate_org(s, org_id, key)


def test_create_input(database: Database, acme: tuple[Organization, str]) -> None:
    org, _ = acme
    with database.session() as s:
        item = orgs.create_input(s, org.id, "temperature", "C")
    assert re.fullmatch(r"sen[a-z0-9]{10}", item.id)
    assert (item.name, item.measure_unit, item.org_id) == ("temperature", "C", org.id)


def test_create_input_rules(database: Database, acme: tuple[Organization, str]) -> None:
    org, _ = acme
    with database.session() as s:
        with pytest.raises(NotFound, match="organization"):
            orgs.create_input(s, "nope", "t")
        with pytest.raises(InvalidArgument, match="name"):
            orgs.create_input(s, org.id, "")
        with pytest.raises(InvalidArgument, match="measure_unit"):
            orgs.create_input(s, org.id, "t", "u" * 51)
        assert orgs.create_input(s, org.id, "t").measure_unit == ""


def test_list_inputs_pages_and_stays_in_the_org(
    database: Database, acme: tuple[Organization, str]
) -> None:
    org, _ = acme
    with database.session() as s:
        other, _ = orgs.create_org(s, "other")
        made = {orgs.create_input(s, org.id, f"i{n}").id for n in range(5)}
        orgs.create_input(s, other.id, "theirs")
    seen: list[str] = []
    page_token = ""
    while True:
        with database.session() as s:
            page, page_token = orgs.list_inputs(s, org.id, 2, page_token)
        assert len(page) <= 2
        seen += [i.id for i in page]
        if not page_token:
            break
    assert sorted(seen) == sorted(made)
    assert len(seen) == 5
    with database.session() as s:
        with pytest.raises(InvalidArgument):
            orgs.list_inputs(s, org.id, -1, "")
        _, token = orgs.list_inputs(s, org.id, 1, "")
        with pytest.raises(InvalidArgument):
            orgs.list_inputs(s, other.id, 1, token)


def test_create_asset(database: Database, acme: tuple[Organization, str]) -> None:
    org, _ = acme
    with database.session() as s:
        a = orgs.create_input(s, org.id, "a")
        b = orgs.create_input(s, org.id, "b")
        first = orgs.create_asset(s, org.id, "truck", [b.id, a.id, b.id])
        second = orgs.create_asset(s, org.id, "empty", [])
    assert isinstance(first.id, int)
    assert second.id > first.id
    assert sorted(i.id for i in first.inputs) == sorted([a.id, b.id])  # duplicates stored once
    with database.session() as s:
        loaded = orgs.get_asset(s, org.id, first.id)
    assert sorted(i.id for i in loaded.inputs) == sorted([a.id, b.id])  # usable when detached


def test_create_asset_names_unknown_and_foreign_inputs(
    database: Database, acme: tuple[Organization, str]
) -> None:
    org, _ = acme
    with database.session() as s:
        other, _ = orgs.create_org(s, "other")
        mine = orgs.create_input(s, org.id, "mine")
        theirs = orgs.create_input(s, other.id, "theirs")
    with database.session() as s, pytest.raises(NotFound) as error:
        orgs.create_asset(s, org.id, "a", [mine.id, theirs.id, "senmissing00"])
    assert theirs.id in error.value.message
    assert "senmissing00" in error.value.message
    assert mine.id not in error.value.message


def test_create_asset_rules(database: Database, acme: tuple[Organization, str]) -> None:
    org, _ = acme
    with database.session() as s:
        with pytest.raises(InvalidArgument, match="name"):
            orgs.create_asset(s, org.id, "", [])
        with pytest.raises(NotFound, match="organization"):
            orgs.create_asset(s, "nope", "a", [])


def test_get_asset_of_another_org(database: Database, acme: tuple[Organization, str]) -> None:
    org, _ = acme
    with database.session() as s:
        other, _ = orgs.create_org(s, "other")
        asset = orgs.create_asset(s, org.id, "a", [])
    with database.session() as s, pytest.raises(NotFound):
        orgs.get_asset(s, other.id, asset.id)


def test_org_ids_never_start_like_a_cli_option(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to "-" first in URL-safe base64: the first draw must be rejected.
    draws = iter([b"\xf8" + bytes(29), bytes(30)])
    monkeypatch.setattr(orgs.secrets, "token_bytes", lambda n: next(draws))
    org_id = orgs.new_org_id()
    assert not org_id.startswith("-")
    assert len(org_id) == 40
