"""Errors and hashing: the primitives everything else in storage builds on."""

from __future__ import annotations

import pytest

from server import errors
from server.security import hashing


def test_errors_carry_message_and_share_a_base() -> None:
    error = errors.NotFound("device 'x' not found")
    assert isinstance(error, errors.ThingwireError)
    assert error.message == "device 'x' not found"
    assert str(error) == "device 'x' not found"


def test_throttled_carries_retry_after() -> None:
    error = errors.Throttled("slow down", retry_after=30)
    assert error.retry_after == 30
    assert error.message == "slow down"


@pytest.mark.parametrize(
    "cls",
    [
        errors.InvalidArgument,
        errors.Unauthenticated,
        errors.PermissionDenied,
        errors.NotFound,
        errors.AlreadyExists,
        errors.FailedPrecondition,
        errors.Unavailable,
        errors.DeadlineExceeded,
    ],
)
def test_every_error_is_a_thingwire_error(cls: type[errors.ThingwireError]) -> None:
    assert issubclass(cls, errors.ThingwireError)
    assert "HTTP" in (cls.__doc__ or "")


def test_password_round_trip() -> None:
    stored = hashing.hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert hashing.verify_password(stored, "correct horse")
    assert not hashing.verify_password(stored, "wrong horse")


def test_verify_password_never_raises() -> None:
    assert not hashing.verify_password("not a hash", "x")
    assert not hashing.verify_password("", "x")
    assert not hashing.verify_password(None, "x")  # no such user: dummy hash verified


def test_needs_rehash_after_parameters_change() -> None:
    stored = hashing.hash_password("pw")
    assert not hashing.needs_rehash(stored)
    hashing.configure_argon2(time_cost=2, memory_cost=8, parallelism=1)
    try:
        assert hashing.needs_rehash(stored)
        assert hashing.verify_password(stored, "pw")  # old hashes still verify
    finally:
        hashing.configure_argon2(time_cost=1, memory_cost=8, parallelism=1)
    assert hashing.needs_rehash("garbage")


def test_secrets_are_random_urlsafe_and_hashed_deterministically() -> None:
    a, b = hashing.new_secret(), hashing.new_secret()
    assert a != b
    assert len(a) >= 43
    assert set(a) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert hashing.hash_secret(a) == hashing.hash_secret(a)
    assert len(hashing.hash_secret(a)) == 64
    assert hashing.hash_secret(a) != hashing.hash_secret(b)


def test_secrets_equal() -> None:
    assert hashing.secrets_equal("abc", "abc")
    assert hashing.secrets_equal(b"abc", "abc")
    assert not hashing.secrets_equal("abc", "abd")
