"""The CLI in-process: `thingwire key rotate`, and the expiry rule it leaves to storage."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from server import cli
from server.auth.device_tokens import sign_stored
from server.clock import utc_now
from server.security.jwt_tokens import TokenSigner
from server.security.keys import KeyFile
from server.storage.db import Database
from server.storage.models import DeviceToken


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "secrets" / "jwt-keys.json"
    monkeypatch.setenv("THINGWIRE_JWT_KEY_FILE", str(path))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else {}, err


def test_key_rotate_prints_one_json_object(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = KeyFile(key_file).load().current
    code, answer, _ = run(capsys, "key", "rotate")
    assert code == 0
    assert set(answer) == {"key_file", "kid", "retired_kid", "retired_verifies_until"}
    assert answer["retired_kid"] == first.kid
    ring = KeyFile(key_file).load()
    assert answer["kid"] == ring.current.kid != first.kid
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_key_rotate_without_grace_forgets_the_old_key_next_time(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = KeyFile(key_file).load().current
    assert run(capsys, "key", "rotate", "--grace-days", "0")[0] == 0
    assert run(capsys, "key", "rotate", "--grace-days", "0")[0] == 0
    assert first.kid not in {k.kid for k in KeyFile(key_file).load().keys}


def test_key_rotate_refuses_a_negative_grace(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, answer, err = run(capsys, "key", "rotate", "--grace-days", "-1")
    assert (code, answer) == (1, {})
    assert err.strip() == "thingwire: error: --grace-days must not be negative"


def test_an_api_token_expiring_in_the_past_is_refused_by_the_one_rule(
    key_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("THINGWIRE_DB_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert (
        run(capsys, "user", "create", "--email", "c@example.com", "--password", "12345678")[0] == 0
    )
    code, _, err = run(
        capsys,
        "apitoken",
        "create",
        "--user",
        "c@example.com",
        "--name",
        "t",
        "--expires",
        "2001-01-01",
    )
    assert code == 1
    assert err.strip() == "thingwire: error: expire_time must be in the future"


@pytest.fixture
def ada_device(
    key_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """A database with user ada and her device boiler, made with the CLI."""
    monkeypatch.setenv("THINGWIRE_DB_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    user = ("user", "create", "--email", "ada@example.com", "--password", "12345678")
    assert run(capsys, *user, "--username", "ada")[0] == 0
    device = ("device", "create", "--user", "ada", "--device", "boiler", "--credentials", "c")
    assert run(capsys, *device)[0] == 0
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_device_token_prints_a_link_token(
    ada_device: str, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, answer, err = run(
        capsys, "device", "token", "--user", "ada", "--device", "boiler", "--name", "fleet"
    )
    assert (code, err) == (0, "")
    assert set(answer) == {"id", "name", "token"}
    assert answer["name"] == "fleet"
    token = answer["token"]
    assert isinstance(token, str)
    now = utc_now()
    claims = TokenSigner(KeyFile(key_file)).verify(token, now)
    assert (claims.device, claims.username, claims.jti) == ("boiler", "ada", answer["id"])
    assert claims.link is True
    assert claims.expire_time is None
    assert claims.resources is None
    payload = jwt.decode(token, options={"verify_signature": False})
    assert list(payload) == ["dev", "iat", "jti", "lnk", "usr"]
    database = Database(ada_device)
    try:
        with database.session() as s:
            row = s.get(DeviceToken, answer["id"])
            assert row is not None
            assert row.link is True
            assert (
                sign_stored(TokenSigner(KeyFile(key_file)), row, "ada", "boiler", now)[0] == token
            )
    finally:
        database.dispose()


def test_device_token_takes_an_expiry(ada_device: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, answer, _ = run(
        capsys,
        *("device", "token", "--user", "ada", "--device", "boiler", "--name", "n"),
        *("--expires", "2099-01-01T00:00:00Z"),
    )
    assert code == 0
    payload = jwt.decode(str(answer["token"]), options={"verify_signature": False})
    assert payload["exp"] == int(datetime(2099, 1, 1, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--user", "nobody", "--device", "boiler", "--name", "n"), "no user 'nobody'"),
        (("--user", "ada", "--device", "other", "--name", "n"), "device 'other' not found"),
        (("--user", "ada", "--device", "boiler", "--name", " "), None),
        (
            ("--user", "ada", "--device", "boiler", "--name", "n", "--expires", "2001-01-01"),
            "token_expiration must be in the future",
        ),
        (
            ("--user", "ada", "--device", "boiler", "--name", "n", "--expires", "soon"),
            "'soon' is not an ISO 8601 time",
        ),
    ],
    ids=["unknown-user", "unknown-device", "blank-name", "past-expiry", "bad-expiry"],
)
def test_device_token_errors_exit_1_with_one_line(
    ada_device: str, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str | None
) -> None:
    code, answer, err = run(capsys, "device", "token", *argv)
    assert (code, answer) == (1, {})
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("thingwire: error: ")
    if message is not None:
        assert err.strip() == f"thingwire: error: {message}"
