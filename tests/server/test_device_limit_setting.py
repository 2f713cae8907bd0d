"""THINGWIRE_MAX_DEVICES_PER_USER: the account's device limit, from the environment."""

from __future__ import annotations

import pytest

from server.config import DEFAULT_MAX_DEVICES_PER_USER, ConfigError, Settings


def test_the_default_is_documented() -> None:
    assert Settings.from_env({}).max_devices_per_user == DEFAULT_MAX_DEVICES_PER_USER == 1000


@pytest.mark.parametrize(("raw", "limit"), [("3", 3), ("0", 0), (" 12 ", 12)])
def test_the_variable_sets_it(raw: str, limit: int) -> None:
    settings = Settings.from_env({"THINGWIRE_MAX_DEVICES_PER_USER": raw})
    assert settings.max_devices_per_user == limit


@pytest.mark.parametrize("raw", ["-1", "many", "", "1.5"])
def test_unusable_values_are_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="THINGWIRE_MAX_DEVICES_PER_USER"):
        Settings.from_env({"THINGWIRE_MAX_DEVICES_PER_USER": raw})
