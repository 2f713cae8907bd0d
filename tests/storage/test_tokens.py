"""Tokens: API tokens, rotating refresh tokens, access tokens and server secrets."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.auth.permissions import NULL
from server.errors import InvalidArgument, NotFound, Unauthenticated
from server.storage import tokens
from server.storage.db import Database
from server.storage.models import ApiToken, RefreshToken, User

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


# --- API tokens ----------------------------------------------------------------------------


def test_api_token_secret_is_shown_once_and_stored_hashed(database: Database, ada: User) -> None:
    with database.session() as s:
        token, secret = tokens.create_api_token(s, ada.id, " laptop ", T0 + DAY, T0)
    assert token.name == "laptop"
    assert token.token_hash != secret
    assert token.create_time == T0
    assert token.expire_time == T0 + DAY
    with database.session() as s:
        stored = s.get(ApiToken, token.id)
        assert stored is not None
        assert stored.expire_time == T0 + DAY  # aware UTC on every backend
        assert stored.expire_time.tzinfo is not None
        assert secret not in {stored.token_hash, stored.name}
        assert tokens.authenticate_api_token(s, secret, T0).id == ada.id


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "required"),
        ("x" * 101, "100"),
        ("t\x00x", "control characters"),
        ("a\nb", "control characters"),
        ("a\x1b[2Jb", "control characters"),
        ("a\x7fb", "control characters"),
    ],
)
def test_api_token_name_rules(database: Database, ada: User, name: str, message: str) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match=message):
        tokens.create_api_token(s, ada.id, name, now=T0)


def test_api_token_expiry_must_be_in_the_future(database: Database, ada: User) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="future"):
        tokens.create_api_token(s, ada.id, "t", T0, T0)


def test_api_token_for_unknown_user(database: Database) -> None:
    with database.session() as s, pytest.raises(NotFound):
        tokens.create_api_token(s, 12345, "t", now=T0)


def test_api_token_expires(database: Database, ada: User) -> None:
    with database.session() as s:
        _, secret = tokens.create_api_token(s, ada.id, "t", T0 + DAY, T0)
    with database.session() as s:
        assert tokens.authenticate_api_token(s, secret, T0 + DAY - timedelta(seconds=1))
        with pytest.raises(Unauthenticated):
            tokens.authenticate_api_token(s, secret, T0 + DAY)


def test_api_token_without_expiry_lasts(database: Database, ada: User) -> None:
    with database.session() as s:
        _, secret = tokens.create_api_token(s, ada.id, "t", now=T0)
    with database.session() as s:
        assert tokens.authenticate_api_token(s, secret, T0 + 3650 * DAY).id == ada.id


def test_unknown_and_revoked_api_tokens_are_refused(database: Database, ada: User) -> None:
    with database.session() as s:
        token, secret = tokens.create_api_token(s, ada.id, "t", now=T0)
        token.revoke_time = T0
    with database.session() as s:
        with pytest.raises(Unauthenticated):
            tokens.authenticate_api_token(s, secret, T0)
        with pytest.raises(Unauthenticated):
            tokens.authenticate_api_token(s, "made-up", T0)


def test_delete_api_token(database: Database, ada: User) -> None:
    with database.session() as s:
        token, secret = tokens.create_api_token(s, ada.id, "t", now=T0)
    with database.session() as s:
        tokens.delete_api_token(s, ada.id, token.id)
    with database.session() as s:
        with pytest.raises(Unauthenticated):
            tokens.authenticate_api_token(s, secret, T0)
        with pytest.raises(NotFound):
            tokens.delete_api_token(s, ada.id, token.id)


def test_another_users_api_token_is_not_found(database: Database, ada: User, bob: User) -> None:
    with database.session() as s:
        token, secret = tokens.create_api_token(s, ada.id, "t", now=T0)
    with database.session() as s, pytest.raises(NotFound):
        tokens.delete_api_token(s, bob.id, token.id)
    with database.session() as s:
        assert tokens.authenticate_api_token(s, secret, T0).id == ada.id


def test_list_api_tokens_pages_newest_first(database: Database, ada: User, bob: User) -> None:
    with database.session() as s:
        # Two tokens share a create_time: the id breaks the tie, nothing is lost or repeated.
        times = [T0, T0 + DAY, T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY]
        made = [tokens.create_api_token(s, ada.id, f"t{i}", now=t)[0] for i, t in enumerate(times)]
        tokens.create_api_token(s, bob.id, "bob's", now=T0)
    expected = [t.id for t in sorted(made, key=lambda t: (t.create_time, t.id), reverse=True)]
    seen, page_token, pages = [], "", 0
    while True:
        with database.session() as s:
            page, page_token = tokens.list_api_tokens(s, ada.id, 2, page_token)
        seen += [t.id for t in page]
        pages += 1
        if not page_token:
            break
    assert seen == expected
    assert pages == 3
    with database.session() as s:
        everything, next_token = tokens.list_api_tokens(s, ada.id, 0, "")
    assert [t.id for t in everything] == expected
    assert next_token == ""


def test_list_api_tokens_rejects_bad_paging(database: Database, ada: User, bob: User) -> None:
    with database.session() as s:
        for i in range(3):
            tokens.create_api_token(s, ada.id, f"t{i}", now=T0)
        _, ada_token = tokens.list_api_tokens(s, ada.id, 1, "")
        with pytest.raises(InvalidArgument, match="page_size"):
            tokens.list_api_tokens(s, ada.id, -1, "")
        with pytest.raises(InvalidArgument, match="page_token"):
            tokens.list_api_tokens(s, ada.id, 1, "not-a-token")
        with pytest.raises(InvalidArgument, match="page_token"):
            tokens.list_api_tokens(s, bob.id, 1, ada_token)  # another listing's token


def test_list_api_tokens_caps_page_size(database: Database, ada: User) -> None:
    with database.session() as s:
        tokens.create_api_token(s, ada.id, "t", now=T0)
        page, next_token = tokens.list_api_tokens(s, ada.id, 10**9, "")
    assert len(page) == 1
    assert next_token == ""


# --- Refresh tokens ------------------------------------------------------------------------


def issue(database: Database, user: User, family: str | None = None) -> RefreshToken:
    return database.call(lambda s: tokens.issue_refresh_token(s, user.id, family, T0 + DAY, T0))


def consume(database: Database, jti: str, now: datetime = T0) -> RefreshToken:
    return database.call(lambda s: tokens.consume_refresh_token(s, jti, now))


def test_refresh_token_rotation(database: Database, ada: User) -> None:
    first = issue(database, ada)
    spent = consume(database, first.jti)
    assert spent.use_time == T0
    assert spent.user_id == ada.id
    second = issue(database, ada, spent.family_id)
    assert second.family_id == first.family_id
    assert second.jti != first.jti
    assert consume(database, second.jti).jti == second.jti


def test_each_login_starts_a_new_family(database: Database, ada: User) -> None:
    assert issue(database, ada).family_id != issue(database, ada).family_id


def revoke_on_replay(database: Database, jti: str) -> None:
    """What the servicer does: a replay revokes the family in a unit of work of its own."""
    try:
        consume(database, jti)
    except tokens.RefreshTokenReplayed as replay:
        family = replay.family_id
        database.call(lambda s: tokens.revoke_refresh_family(s, family, T0))
        raise


def test_reusing_a_spent_refresh_token_revokes_the_family(database: Database, ada: User) -> None:
    first = issue(database, ada)
    consume(database, first.jti)
    second = issue(database, ada, first.family_id)
    with pytest.raises(Unauthenticated, match="invalid refresh token"):
        revoke_on_replay(database, first.jti)  # replay: the unit of work rolls back...
    with database.session() as s:  # ...and the revocation, apart, was committed
        revoked = s.scalars(
            sa.select(RefreshToken.revoke_time).where(RefreshToken.family_id == first.family_id)
        ).all()
    assert revoked == [T0, T0]
    with pytest.raises(Unauthenticated):
        consume(database, second.jti)  # the legitimate successor is dead too
    with pytest.raises(Unauthenticated):
        issue(database, ada, first.family_id)  # and the family cannot grow again


def test_a_replay_names_its_family_and_commits_nothing(database: Database, ada: User) -> None:
    """The unit of work that sees a replay is commit-or-rollback like any other."""
    first = issue(database, ada)
    consume(database, first.jti)
    with pytest.raises(tokens.RefreshTokenReplayed) as replay:
        consume(database, first.jti)
    assert replay.value.family_id == first.family_id
    assert replay.value.message == "invalid refresh token"
    with database.session() as s:
        assert s.scalar(sa.select(RefreshToken.revoke_time)) is None


def test_revocation_does_not_touch_other_families(database: Database, ada: User) -> None:
    stolen, other = issue(database, ada), issue(database, ada)
    consume(database, stolen.jti)
    with pytest.raises(Unauthenticated):
        revoke_on_replay(database, stolen.jti)
    assert consume(database, other.jti).jti == other.jti


def test_expired_or_unknown_refresh_token(database: Database, ada: User) -> None:
    token = issue(database, ada)
    with pytest.raises(Unauthenticated):
        consume(database, token.jti, T0 + DAY)
    with pytest.raises(Unauthenticated):
        consume(database, "no-such-jti")
    assert consume(database, token.jti, T0 + DAY - timedelta(seconds=1)).jti == token.jti


def test_concurrent_consumes_spend_a_token_once(database: Database, ada: User) -> None:
    token = issue(database, ada)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def attempt() -> None:
        barrier.wait()
        try:
            consume(database, token.jti)
            outcomes.append("ok")
        except Unauthenticated:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "refused", "refused", "refused"]


def test_revoke_refresh_family(database: Database, ada: User) -> None:
    token = issue(database, ada)
    with database.session() as s:
        assert tokens.revoke_refresh_family(s, token.family_id, T0) == 1
    with pytest.raises(Unauthenticated):
        consume(database, token.jti)


# --- Access tokens -------------------------------------------------------------------------

PERMISSIONS = [{"device": "dev1", "resources": ["temp"], "actions": ["read"]}]


def test_access_token_lifecycle(database: Database, ada: User) -> None:
    with database.session() as s:
        token = tokens.create_access_token(s, ada.id, "dashboard", PERMISSIONS, T0 + DAY, T0)
    assert len(token.id) == 24
    assert all(c in "0123456789abcdef" for c in token.id)
    with database.session() as s:
        active = tokens.get_active_access_token(s, token.id, T0)
        assert active.permissions == PERMISSIONS
        assert active.user_id == ada.id
        assert [t.id for t in tokens.list_access_tokens(s, ada.id)] == [token.id]
        with pytest.raises(Unauthenticated):
            tokens.get_active_access_token(s, token.id, T0 + DAY)
    with database.session() as s:
        tokens.delete_access_token(s, ada.id, token.id)
    with database.session() as s:
        with pytest.raises(Unauthenticated):
            tokens.get_active_access_token(s, token.id, T0)
        assert tokens.list_access_tokens(s, ada.id) == []


def test_revoked_or_unknown_access_token(database: Database, ada: User) -> None:
    with database.session() as s:
        token = tokens.create_access_token(s, ada.id, "t", None, None, T0)
        token.revoke_time = T0
    with database.session() as s:
        with pytest.raises(Unauthenticated):
            tokens.get_active_access_token(s, token.id, T0)
        with pytest.raises(Unauthenticated):
            tokens.get_active_access_token(s, "f" * 24, T0)


def test_list_access_tokens_newest_first_and_own_only(
    database: Database, ada: User, bob: User
) -> None:
    with database.session() as s:
        old = tokens.create_access_token(s, ada.id, "old", None, None, T0)
        new = tokens.create_access_token(s, ada.id, "new", None, None, T0 + DAY)
        tokens.create_access_token(s, bob.id, "bob's", None, None, T0)
        assert [t.id for t in tokens.list_access_tokens(s, ada.id)] == [new.id, old.id]


def test_another_users_access_token_is_not_found(database: Database, ada: User, bob: User) -> None:
    with database.session() as s:
        token = tokens.create_access_token(s, ada.id, "t", None, None, T0)
    with database.session() as s, pytest.raises(NotFound):
        tokens.delete_access_token(s, bob.id, token.id)
    with database.session() as s:
        assert tokens.get_active_access_token(s, token.id, T0).id == token.id


@pytest.mark.parametrize(
    "permissions",
    [
        "all",
        ["dev1"],
        [{"device": 1}],
        [{"resources": [1]}],
        [{"actions": {"read": True}}],
        [{"devices": "x"}],
        [{"device": "dev1", "actions": "call"}],  # a string, not a list of actions
        [{"device": "dev1", "actions": ["fly"]}],  # no such action
        [{"device": "dev1", "resources": "temp"}],  # a string, not a list of resources
        [{"device": None}],  # null is not "every device"
        [{"device": ""}],
        [{"resources": ["temp"]}],  # a device (or "*") is required
        [{"device": "no such id!"}],
        [{"device": "dev1", "resources": [""]}],
        [{"device": "dev1", "resources": ["r"] * 101}],
        [{"device": "dev1", "actions": ["read"] * 101}],
        [{"device": "*"}] * 101,
        [{"device": "*"}] * 10_000,
        [],  # an empty list is not full access: that is asked for by leaving them out
        [None],  # once dropped on the way and read as [] (full access)
        {"device": "*"},  # an object, not a list
        [{"device": "*", "extra": 1}],
        [{"device": "dev1", "actions": ["call", None]}],
        [{"device": "dev1", "resources": None}],  # a key is left out, never null
        [{"device": "dev1", "actions": None}],
        NULL,  # a JSON null sent for the whole list
    ],
)
def test_access_token_permissions_shape(database: Database, ada: User, permissions: object) -> None:
    with database.session() as s, pytest.raises(InvalidArgument, match="permissions"):
        tokens.create_access_token(s, ada.id, "t", permissions, None, T0)
    with database.session() as s:
        assert tokens.list_access_tokens(s, ada.id) == []


def test_access_token_permissions_are_stored_in_one_canonical_shape(
    database: Database, ada: User
) -> None:
    """Defaults are filled once, on the way in: what is stored is what the authenticator reads."""
    given = [{"device": "dev1"}, {"device": "*", "resources": ["b", "a", "a"], "actions": ["call"]}]
    with database.session() as s:
        token = tokens.create_access_token(s, ada.id, "t", given, None, T0)
    assert token.permissions == [
        {"device": "dev1", "resources": [], "actions": ["read", "call"]},
        {"device": "*", "resources": ["a", "b"], "actions": ["call"]},
    ]


def test_the_most_permissions_a_token_may_carry_are_accepted(database: Database, ada: User) -> None:
    most = [{"device": "*", "resources": ["r"] * 100, "actions": ["read"] * 100}] * 100
    with database.session() as s:
        token = tokens.create_access_token(s, ada.id, "t", most, None, T0)
    assert len(token.permissions or []) == 100


def test_access_token_rules(database: Database, ada: User) -> None:
    with database.session() as s:
        with pytest.raises(InvalidArgument, match="name"):
            tokens.create_access_token(s, ada.id, "", None, None, T0)
        with pytest.raises(InvalidArgument, match="future"):
            tokens.create_access_token(s, ada.id, "t", None, T0 - DAY, T0)
        with pytest.raises(NotFound):
            tokens.create_access_token(s, 999, "t", None, None, T0)


def test_a_deleted_api_token_id_is_never_reused(database: Database, ada: User) -> None:
    with database.session() as s:
        first, _ = tokens.create_api_token(s, ada.id, "first", None, T0)
    with database.session() as s:
        tokens.delete_api_token(s, ada.id, first.id)
    with database.session() as s:
        second, _ = tokens.create_api_token(s, ada.id, "second", None, T0)
    assert second.id != first.id


@pytest.mark.parametrize(
    "position",
    [{"k": [1]}, {"k": {"a": 1}}, {"k": 99999999999999999999999}, {"k": "1"}, {"t": 5}, []],
)
def test_forged_page_tokens_are_invalid_arguments(
    database: Database, ada: User, position: object
) -> None:
    body = position
    if isinstance(position, dict):
        body = {"s": f"api_tokens:{ada.id}", "t": T0.isoformat(), "k": 1, **position}
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    with database.session() as s, pytest.raises(InvalidArgument, match="page_token"):
        tokens.list_api_tokens(s, ada.id, 10, forged)
