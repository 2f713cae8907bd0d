"""Atomic state files: the old file or the new one, never a mix, and no leftovers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from device_agent import state_files
from device_agent.state_files import StateFileError, read_json, write_atomically, write_json


def test_write_creates_parents_and_sets_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "file.json"
    write_atomically(path, b"hello", mode=0o640)
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_default_mode_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_atomically(path, b"psk")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_replace_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "grains.json"
    for n in range(5):
        write_json(path, {"n": n})
    assert os.listdir(tmp_path) == ["grains.json"]
    assert read_json(path, None) == {"n": 4}


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "grains.json"
    write_json(path, {"old": True})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        write_json(path, {"new": True})
    assert read_json(path, None) == {"old": True}
    assert os.listdir(tmp_path) == ["grains.json"]


def test_unserialisable_value_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    with pytest.raises(ValueError, match="Out of range"):
        write_json(path, {"x": float("nan")})
    assert not path.exists()


def test_read_json_missing_is_the_default(tmp_path: Path) -> None:
    assert read_json(tmp_path / "none.json", {"d": 1}) == {"d": 1}


def test_read_json_corrupt_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "grains.json"
    path.write_text('{"half": ')
    with pytest.raises(StateFileError, match=r"grains\.json is not valid JSON"):
        read_json(path, {})
    assert path.read_text() == '{"half": '


def test_read_json_not_utf8_raises(tmp_path: Path) -> None:
    path = tmp_path / "grains.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(StateFileError):
        read_json(path, {})
