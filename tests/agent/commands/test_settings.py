"""CommandSettings from the environment: defaults, each mode, and refused values."""

from __future__ import annotations

import pytest

from device_agent.commands import CommandSettings


def test_defaults_when_unset() -> None:
    settings = CommandSettings.from_env({})
    assert settings.cmd_run == "enabled"
    assert settings.cmd_run_allowed == frozenset()
    assert settings.cmd_timeout_s == 30.0
    assert settings.wifi_country == "US"


def test_empty_values_mean_the_defaults() -> None:
    env = {
        "THINGWIRE_AGENT_CMD_RUN": "",
        "THINGWIRE_AGENT_CMD_TIMEOUT": " ",
        "THINGWIRE_AGENT_WIFI_COUNTRY": "",
    }
    assert CommandSettings.from_env(env) == CommandSettings()


@pytest.mark.parametrize("value", ["enabled", "ENABLED", " enabled "])
def test_enabled(value: str) -> None:
    assert CommandSettings.from_env({"THINGWIRE_AGENT_CMD_RUN": value}).cmd_run == "enabled"


def test_disabled() -> None:
    settings = CommandSettings.from_env({"THINGWIRE_AGENT_CMD_RUN": "disabled"})
    assert settings.cmd_run == "disabled"


def test_allow_list_is_restricted() -> None:
    settings = CommandSettings.from_env({"THINGWIRE_AGENT_CMD_RUN": "ls, uptime,cat"})
    assert settings.cmd_run == "restricted"
    assert settings.cmd_run_allowed == frozenset({"ls", "uptime", "cat"})


@pytest.mark.parametrize("value", ["/bin/ls", "ls,,cat", "ls,", "rm -rf", "../x", "a;b"])
def test_bad_allow_list_names_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="THINGWIRE_AGENT_CMD_RUN"):
        CommandSettings.from_env({"THINGWIRE_AGENT_CMD_RUN": value})


def test_timeout_and_country() -> None:
    env = {"THINGWIRE_AGENT_CMD_TIMEOUT": "2.5", "THINGWIRE_AGENT_WIFI_COUNTRY": "de"}
    settings = CommandSettings.from_env(env)
    assert settings.cmd_timeout_s == 2.5
    assert settings.wifi_country == "DE"


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "601", "1e9"])
def test_bad_timeout_names_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="THINGWIRE_AGENT_CMD_TIMEOUT"):
        CommandSettings.from_env({"THINGWIRE_AGENT_CMD_TIMEOUT": value})


@pytest.mark.parametrize("value", ["USA", "U", "1", "U$", "d e"])
def test_bad_country_names_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="THINGWIRE_AGENT_WIFI_COUNTRY"):
        CommandSettings.from_env({"THINGWIRE_AGENT_WIFI_COUNTRY": value})


def test_world_domain_is_a_country() -> None:
    assert CommandSettings.from_env({"THINGWIRE_AGENT_WIFI_COUNTRY": "00"}).wifi_country == "00"


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ValueError, match="at least one allowed program"):
        CommandSettings(cmd_run="restricted")
    with pytest.raises(ValueError, match="bare program name"):
        CommandSettings(cmd_run="restricted", cmd_run_allowed=frozenset({"/bin/sh"}))
    with pytest.raises(ValueError, match="cmd_timeout_s"):
        CommandSettings(cmd_timeout_s=0)
    with pytest.raises(ValueError, match="wifi_country"):
        CommandSettings(wifi_country="us")
