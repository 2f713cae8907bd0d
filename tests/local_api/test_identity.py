"""The device's unit id and the Local API's token, as kept in the state directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.local_identity import KEY_FILE, UNIT_ID_FILE, load_identity

UNIT = "3F1C5A9E-8A44-4D5E-9A55-0C8F1F3B2D71"


def test_a_given_unit_id_is_kept_in_canonical_form(tmp_path: Path) -> None:
    assert load_identity(tmp_path, UNIT).unit_id == UNIT.lower()
    assert (tmp_path / UNIT_ID_FILE).read_text() == UNIT.lower()
    assert load_identity(tmp_path, None).unit_id == UNIT.lower()  # later starts read it


def test_a_hand_written_file_with_a_line_end_is_read(tmp_path: Path) -> None:
    (tmp_path / UNIT_ID_FILE).write_text(UNIT.lower() + "\n")
    assert load_identity(tmp_path, None).unit_id == UNIT.lower()


def test_without_a_unit_id_one_is_made_once(tmp_path: Path) -> None:
    made = load_identity(tmp_path, None).unit_id
    assert load_identity(tmp_path, None).unit_id == made


@pytest.mark.parametrize("bad", ["not-a-uuid", "../../etc"])
def test_a_unit_id_that_is_not_a_uuid_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not a UUID"):
        load_identity(tmp_path, bad)
    (tmp_path / UNIT_ID_FILE).write_text(bad)
    with pytest.raises(ValueError, match="not a UUID"):
        load_identity(tmp_path, None)


def test_the_token_is_static_and_a_new_key_withdraws_it(tmp_path: Path) -> None:
    first = load_identity(tmp_path, UNIT)
    again = load_identity(tmp_path, UNIT)
    assert first.token == again.token
    assert again.token_matches(first.token)
    assert not again.token_matches(first.token[:-1] + ("A" if first.token[-1] != "A" else "B"))
    assert not again.token_matches("")
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o077 == 0
    (tmp_path / KEY_FILE).unlink()
    renewed = load_identity(tmp_path, UNIT)
    assert renewed.token != first.token
    assert not renewed.token_matches(first.token)
