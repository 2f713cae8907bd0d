"""The resource-call settings: read from THINGWIRE_* variables, refused when unusable."""

from __future__ import annotations

import pytest

from server.config import ConfigError, Settings
from server.link.link import LinkLimits


def test_the_defaults_are_the_links_defaults() -> None:
    settings = Settings.from_env({})
    limits = LinkLimits()
    assert settings.resource_call_timeout_s == limits.call_timeout_s == 10.0
    assert settings.link_max_calls_in_flight == limits.max_calls_in_flight == 64


def test_the_variables_set_them() -> None:
    settings = Settings.from_env(
        {"THINGWIRE_RESOURCE_CALL_TIMEOUT_S": "2.5", "THINGWIRE_LINK_MAX_CALLS_IN_FLIGHT": "200"}
    )
    assert settings.resource_call_timeout_s == 2.5
    assert settings.link_max_calls_in_flight == 200


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "3601", "soon"])
def test_an_unusable_call_timeout_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="THINGWIRE_RESOURCE_CALL_TIMEOUT_S"):
        Settings.from_env({"THINGWIRE_RESOURCE_CALL_TIMEOUT_S": raw})


@pytest.mark.parametrize("raw", ["0", "-3", "1.5", "many"])
def test_an_unusable_in_flight_limit_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="THINGWIRE_LINK_MAX_CALLS_IN_FLIGHT"):
        Settings.from_env({"THINGWIRE_LINK_MAX_CALLS_IN_FLIGHT": raw})
