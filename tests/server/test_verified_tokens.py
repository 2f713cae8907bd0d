"""The signer's memory of verified tokens: it saves decoding, never changes a decision."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from server.errors import Unauthenticated
from server.security import jwt_tokens
from server.security.jwt_tokens import ACCESS_TOKEN_LIFETIME, TokenSigner
from server.security.keys import KeyFile, KeyRing, SigningKey

SECRET = b"k" * 32


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens PyJWT was asked to decode, in order."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt_tokens.jwt, "decode", counting)
    return seen


def now() -> datetime:
    """The real clock: PyJWT refuses an iat ahead of it."""
    return datetime.now(UTC)


def test_a_token_seen_again_is_not_decoded_again(decodes: list[str]) -> None:
    signer = TokenSigner(KeyRing.generate())
    token = signer.access_token("ada", now())
    first = signer.verify(token, now())
    assert signer.verify(token, now()) == first
    assert decodes == [token]


def test_a_remembered_token_is_refused_once_it_expires(decodes: list[str]) -> None:
    signer = TokenSigner(KeyRing.generate())
    issued = now()
    token = signer.access_token("ada", issued)
    signer.verify(token, issued)
    with pytest.raises(Unauthenticated, match="expired"):
        signer.verify(token, issued + ACCESS_TOKEN_LIFETIME + timedelta(seconds=1))
    assert decodes == [token]  # refused by the memory, on its own clock check


def test_a_remembered_token_is_refused_once_its_key_leaves_its_grace() -> None:
    t0 = now()
    retired = SigningKey("old", SECRET, t0, retire_time=t0, verify_until=t0 + timedelta(hours=1))
    ring = KeyRing((retired, SigningKey("new", b"n" * 32, t0)))
    iat = int(t0.timestamp())
    token = jwt.encode(
        {"iat": iat, "exp": iat + 7200, "usr": "ada"}, SECRET, "HS256", headers={"kid": "old"}
    )
    signer = TokenSigner(ring)
    assert signer.verify(token, t0).username == "ada"
    with pytest.raises(Unauthenticated):
        signer.verify(token, t0 + timedelta(hours=1))


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KeyFile:
    """A key file looked at again on every use (not once a second)."""
    monkeypatch.setattr("server.security.keys.RELOAD_INTERVAL_SECONDS", 0.0)
    key_file = KeyFile(tmp_path / "keys.json")
    key_file.load(now())
    return key_file


def remembered(keys: KeyFile) -> tuple[TokenSigner, str]:
    """A signer over `keys` and a token it has verified once."""
    signer = TokenSigner(keys)
    token = signer.access_token("ada", now())
    signer.verify(token, now())
    return signer, token


def test_a_changed_key_file_verifies_again(
    tmp_path: Path, keys: KeyFile, decodes: list[str]
) -> None:
    signer, token = remembered(keys)
    # The key file is replaced by one without that key, as an operator could do.
    (tmp_path / "keys.json").write_bytes(KeyRing.generate(now()).to_json())
    os.utime(tmp_path / "keys.json", ns=(1, 1))
    with pytest.raises(Unauthenticated):
        signer.verify(token, now())
    assert decodes == [token]  # refused by the new ring before any decoding


def test_a_rotation_decodes_once_more_and_keeps_accepting_in_the_grace(
    keys: KeyFile, decodes: list[str]
) -> None:
    signer, token = remembered(keys)
    keys.rotate(now())
    assert signer.verify(token, now()).username == "ada"
    assert decodes == [token, token]


def test_a_tampered_signature_is_refused_after_the_real_token_was_seen() -> None:
    signer = TokenSigner(KeyRing.generate())
    token = signer.access_token("ada", now())
    signer.verify(token, now())
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(Unauthenticated):
        signer.verify(forged, now())


def test_another_users_token_is_its_own_entry() -> None:
    signer = TokenSigner(KeyRing.generate())
    ada, bob = signer.access_token("ada", now()), signer.access_token("bob", now())
    assert signer.verify(ada, now()).username == "ada"
    assert signer.verify(bob, now()).username == "bob"
    assert signer.verify(ada, now()).username == "ada"


def test_another_signers_token_is_refused_whatever_this_one_remembers() -> None:
    signer, other = TokenSigner(KeyRing.generate()), TokenSigner(KeyRing.generate())
    signer.verify(signer.access_token("ada", now()), now())
    with pytest.raises(Unauthenticated):
        signer.verify(other.access_token("ada", now()), now())


def test_a_refused_token_is_not_remembered(decodes: list[str]) -> None:
    ring = KeyRing.generate()
    signer = TokenSigner(ring)
    # Signed with the very key, but a login token without exp: refused after decoding.
    claims = {"iat": int(now().timestamp()), "usr": "ada"}
    token = jwt.encode(claims, ring.current.secret, "HS256", headers={"kid": ring.current.kid})
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            signer.verify(token, now())
    assert len(decodes) == 2


def test_the_memory_is_bounded(decodes: list[str]) -> None:
    signer = TokenSigner(KeyRing.generate(), cache_size=2)
    tokens = [signer.access_token(name, now()) for name in ("ada", "bob", "eve")]
    for token in tokens:
        signer.verify(token, now())
    signer.verify(tokens[0], now())  # pushed out by the third
    assert decodes == [*tokens, tokens[0]]


def test_no_memory_decodes_every_time(decodes: list[str]) -> None:
    signer = TokenSigner(KeyRing.generate(), cache_size=0)
    token = signer.access_token("ada", now())
    signer.verify(token, now())
    signer.verify(token, now())
    assert decodes == [token, token]
