"""The CLI in-process: `thingwire key rotate`, and the expiry rule it leaves to storage."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from server import cli
from server.security.keys import KeyFile


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
