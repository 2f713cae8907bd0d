"""state.sls: the rendered wpa_supplicant.conf and modem profile, line by line, and salt's
state result shape."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from device_agent.commands import ApnSettings, Commands, CommandSettings
from device_agent.commands.errors import CommandError
from tests.agent.commands.conftest import execute

WLAN = "network.wlan.client.config"
QMI = "network.wwan.qmi.config"
HEADER = [
    "# Rendered from the wpa_supplicant:networks grain by state.sls network.wlan.client.config.",
    "# Set the grain and run the state again rather than editing this file.",
    "ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev",
    "update_config=1",
]


def set_networks(commands: Commands, networks: Any) -> None:
    result = execute(commands, "grains.set", "wpa_supplicant:networks", networks, force=True)
    assert result["result"] is True


def only_state(answer: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    assert len(answer) == 1
    return next(iter(answer.items()))


def wpa_lines(state_dir: Path) -> list[str]:
    return (state_dir / "rendered" / "wpa_supplicant.conf").read_text().split("\n")


def test_documented_networks_render_by_priority(commands: Commands, state_dir: Path) -> None:
    set_networks(
        commands,
        [
            {"ssid": "Network-2", "psk": "password2", "priority": 1},
            {"ssid": "Network-1", "psk": "password1", "priority": 2},
        ],
    )
    key, state = only_state(execute(commands, "state.sls", WLAN))
    path = state_dir / "rendered" / "wpa_supplicant.conf"
    assert key == f"file_|-wpa_supplicant_config_|-{path}_|-managed"
    assert state["result"] is True
    assert state["changes"] == {"diff": "New file"}
    assert state["comment"] == f"File {path} updated"
    assert state["name"] == str(path)
    assert state["__run_num__"] == 0
    assert state["__sls__"] == WLAN
    assert wpa_lines(state_dir) == [
        *HEADER,
        "country=US",
        "",
        "network={",
        '\tssid="Network-1"',
        '\tpsk="password1"',
        "\tpriority=2",
        "}",
        "",
        "network={",
        '\tssid="Network-2"',
        '\tpsk="password2"',
        "\tpriority=1",
        "}",
        "",
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["wpa_supplicant.conf"]


def test_second_run_has_no_changes(commands: Commands, state_dir: Path) -> None:
    set_networks(commands, [{"ssid": "a", "psk": "password1"}])
    execute(commands, "state.sls", WLAN)
    _, state = only_state(execute(commands, "state.sls", WLAN))
    assert state["result"] is True
    assert state["changes"] == {}
    assert state["comment"].endswith("is in the correct state")


def test_a_change_is_a_diff_with_secrets_hidden(commands: Commands) -> None:
    set_networks(commands, [{"ssid": "a", "psk": "old-secret-1"}])
    execute(commands, "state.sls", WLAN)
    set_networks(commands, [{"ssid": "a", "psk": "new-secret-2", "priority": 3}])
    _, state = only_state(execute(commands, "state.sls", WLAN))
    diff = state["changes"]["diff"]
    assert "-\tpriority=0\n" in diff
    assert "+\tpriority=3\n" in diff
    assert "-\tpsk=<hidden>\n" in diff
    assert "+\tpsk=<hidden>\n" in diff
    assert "secret" not in diff


def test_ties_keep_the_grain_order_and_priority_defaults_to_zero(
    commands: Commands, state_dir: Path
) -> None:
    set_networks(
        commands,
        [{"ssid": "first"}, {"ssid": "top", "priority": 5.0}, {"ssid": "second", "priority": 0}],
    )
    execute(commands, "state.sls", WLAN)
    ssids = [line for line in wpa_lines(state_dir) if line.startswith("\tssid=")]
    assert ssids == ['\tssid="top"', '\tssid="first"', '\tssid="second"']
    assert "\tpriority=5" in wpa_lines(state_dir)


@pytest.mark.parametrize("psk", [None, ""])
def test_open_network_is_key_mgmt_none(commands: Commands, state_dir: Path, psk: Any) -> None:
    network: dict[str, Any] = {"ssid": "Cafe", "priority": 1}
    if psk is not None:
        network["psk"] = psk
    set_networks(commands, [network])
    execute(commands, "state.sls", WLAN)
    block = wpa_lines(state_dir)[len(HEADER) + 2 :]
    assert block == ["network={", '\tssid="Cafe"', "\tkey_mgmt=NONE", "\tpriority=1", "}", ""]


@pytest.mark.parametrize(
    "ssid",
    ['Bob"s net', "back\\slash", "two\nlines", "tab\there", "Café", "\x7f", "日本"],
)
def test_ssids_that_cannot_be_quoted_are_hex(
    commands: Commands, state_dir: Path, ssid: str
) -> None:
    set_networks(commands, [{"ssid": ssid}])
    execute(commands, "state.sls", WLAN)
    assert f"\tssid={ssid.encode().hex()}" in wpa_lines(state_dir)


def test_plain_ssid_with_spaces_and_hash_is_quoted(commands: Commands, state_dir: Path) -> None:
    set_networks(commands, [{"ssid": " My Wi-Fi #1 "}])
    execute(commands, "state.sls", WLAN)
    assert '\tssid=" My Wi-Fi #1 "' in wpa_lines(state_dir)


def test_passphrase_with_quote_is_written_as_the_derived_key(
    commands: Commands, state_dir: Path
) -> None:
    set_networks(commands, [{"ssid": "IEEE", "psk": 'pass"word\\'}])
    execute(commands, "state.sls", WLAN)
    key = hashlib.pbkdf2_hmac("sha1", b'pass"word\\', b"IEEE", 4096, 32).hex()
    assert f"\tpsk={key}" in wpa_lines(state_dir)


def test_derived_key_matches_the_ieee_test_vector() -> None:
    # IEEE 802.11i-2004, H.4.1: passphrase "password", SSID "IEEE".
    from device_agent.commands.wpa import render_wpa_supplicant

    text = render_wpa_supplicant(
        [{"ssid": "IEEE", "psk": 'password"'}], country="US", ctrl_interface="x"
    )
    expected = hashlib.pbkdf2_hmac("sha1", b'password"', b"IEEE", 4096, 32).hex()
    assert f"\tpsk={expected}" in text.split("\n")
    vector = hashlib.pbkdf2_hmac("sha1", b"password", b"IEEE", 4096, 32).hex()
    assert vector == "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"


def test_raw_64_hex_psk_is_kept(commands: Commands, state_dir: Path) -> None:
    raw = "AB" * 32
    set_networks(commands, [{"ssid": "x", "psk": raw}])
    execute(commands, "state.sls", WLAN)
    assert f"\tpsk={raw.lower()}" in wpa_lines(state_dir)


def test_hidden_network_scans_for_its_ssid(commands: Commands, state_dir: Path) -> None:
    set_networks(commands, [{"ssid": "hidden", "psk": "password1", "scan_ssid": True}])
    execute(commands, "state.sls", WLAN)
    assert "\tscan_ssid=1" in wpa_lines(state_dir)


def test_country_comes_from_the_settings(state_dir: Path) -> None:
    commands = Commands(state_dir, CommandSettings(wifi_country="DE"))
    execute(commands, "state.sls", WLAN)
    assert wpa_lines(state_dir) == [*HEADER, "country=DE", ""]


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        ([{"psk": "password1"}], "network 1 needs an 'ssid'"),
        ([{"ssid": ""}], "network 1 needs an 'ssid'"),
        ([{"ssid": "ok"}, {"ssid": 5}], "network 2 needs an 'ssid'"),
        ([{"ssid": "x" * 33}], "at most 32 are allowed"),
        ([{"ssid": "é" * 17}], "the ssid is 34 bytes"),
        ([{"ssid": "a", "psk": "short"}], "psk must be 8 to 63 printable ASCII"),
        ([{"ssid": "a", "psk": "x" * 64}], "psk must be 8 to 63"),
        ([{"ssid": "a", "psk": "pass\nword"}], "psk must be 8 to 63"),
        ([{"ssid": "a", "psk": "pässwörd"}], "psk must be 8 to 63"),
        ([{"ssid": "a", "psk": 12345678}], "psk must be a string"),
        ([{"ssid": "a", "priority": "high"}], "priority must be a whole number"),
        ([{"ssid": "a", "priority": True}], "priority must be a whole number"),
        ([{"ssid": "a", "priority": -1}], "priority must be a whole number"),
        ([{"ssid": "a", "priority": 1.5}], "priority must be a whole number"),
        ([{"ssid": "a", "hidden": True}], "unknown key 'hidden'"),
        ([{"ssid": "a", "scan_ssid": "yes"}], "scan_ssid must be true or false"),
        (["just-a-string"], "network 1 must be an object"),
        ({"ssid": "not-a-list"}, "grain must be a list"),
    ],
)
def test_bad_networks_fail_the_state_and_keep_the_file(
    commands: Commands, state_dir: Path, networks: Any, message: str
) -> None:
    set_networks(commands, [{"ssid": "good", "psk": "password1"}])
    execute(commands, "state.sls", WLAN)
    before = wpa_lines(state_dir)
    set_networks(commands, networks)
    _, state = only_state(execute(commands, "state.sls", WLAN))
    assert state["result"] is False
    assert message in state["comment"]
    assert state["comment"].startswith("Unable to manage file: ")
    assert state["changes"] == {}
    assert wpa_lines(state_dir) == before


def test_test_mode_shows_the_change_without_writing(commands: Commands, state_dir: Path) -> None:
    set_networks(commands, [{"ssid": "a"}])
    _, state = only_state(execute(commands, "state.sls", WLAN, test=True))
    assert state["result"] is None
    assert state["changes"] == {"diff": "New file"}
    assert not (state_dir / "rendered" / "wpa_supplicant.conf").exists()


def test_wrong_mode_is_repaired(commands: Commands, state_dir: Path) -> None:
    execute(commands, "state.sls", WLAN)
    path = state_dir / "rendered" / "wpa_supplicant.conf"
    path.chmod(0o644)
    _, state = only_state(execute(commands, "state.sls", WLAN))
    assert state["changes"] == {"mode": "0600"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def qmi_lines(state_dir: Path) -> list[str]:
    return (state_dir / "rendered" / "qmi-network.conf").read_text().split("\n")


def test_qmi_profile_from_the_apn_settings(state_dir: Path) -> None:
    apn = ApnSettings(state_dir)
    commands = Commands(state_dir, CommandSettings(), apn)
    apn.put({"apn": "internet", "user": "user", "pass": "it's", "pin": "0000", "mtu": 1280})
    key, state = only_state(execute(commands, "state.sls", QMI))
    path = state_dir / "rendered" / "qmi-network.conf"
    assert key == f"file_|-qmi_network_config_|-{path}_|-managed"
    assert state["result"] is True
    assert state["changes"] == {"diff": "New file"}
    assert qmi_lines(state_dir) == [
        "# Rendered from the APN settings by state.sls network.wwan.qmi.config.",
        "# PUT /dongle/<unit_id>/settings/apn/ and run the state again rather than editing.",
        "APN='internet'",
        "APN_USER='user'",
        "APN_PASS='it'\\''s'",
        "PIN='0000'",
        "MTU=1280",
        "",
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _, again = only_state(execute(commands, "state.sls", QMI))
    assert again["changes"] == {}


def test_qmi_profile_reads_back_exactly_in_a_shell(state_dir: Path) -> None:
    apn = ApnSettings(state_dir)
    commands = Commands(state_dir, CommandSettings(), apn)
    password = "a'b\"c$(touch x)`id` \\ ;|&"
    apn.put({"apn": "web.example", "user": "u", "pass": password})
    execute(commands, "state.sls", QMI)
    profile = state_dir / "rendered" / "qmi-network.conf"
    shown = subprocess.run(
        ["sh", "-c", '. "$1" && printf %s "$APN_PASS"', "sh", str(profile)],
        capture_output=True,
        text=True,
        check=True,
        cwd=state_dir,
    ).stdout
    assert shown == password
    assert not (state_dir / "x").exists()


def test_qmi_diff_hides_the_password_and_pin(state_dir: Path) -> None:
    apn = ApnSettings(state_dir)
    commands = Commands(state_dir, CommandSettings(), apn)
    apn.put({"apn": "a", "pass": "first-secret", "pin": "1111"})
    execute(commands, "state.sls", QMI)
    apn.put({"apn": "b", "pass": "second-secret", "pin": "2222"})
    _, state = only_state(execute(commands, "state.sls", QMI))
    diff = state["changes"]["diff"]
    assert "-APN='a'\n" in diff
    assert "+APN='b'\n" in diff
    assert "+APN_PASS=<hidden>\n" in diff
    assert "+PIN=<hidden>\n" in diff
    assert "secret" not in diff
    assert "2222" not in diff


def test_defaults_render_without_settings(commands: Commands, state_dir: Path) -> None:
    execute(commands, "state.sls", QMI)
    assert "MTU=1500" in qmi_lines(state_dir)
    assert "APN=''" in qmi_lines(state_dir)


def test_several_sls_in_one_call(commands: Commands) -> None:
    answer = execute(commands, "state.sls", f"{WLAN},{QMI}")
    assert [state["__run_num__"] for state in answer.values()] == [0, 1]
    assert [state["__sls__"] for state in answer.values()] == [WLAN, QMI]
    assert execute(commands, "state.apply", [QMI]) != {}


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (["network.nothing"], {}, "No matching sls found for 'network.nothing' in env 'base'"),
        ([f"{WLAN},../../etc"], {}, "No matching sls found for '../../etc'"),
        ([5], {}, "mods must be an sls name"),
        ([f"{WLAN},"], {}, "without empty names"),
        ([WLAN], {"test": "yes"}, "test must be true or false"),
        ([WLAN], {"pillar": {}}, "unexpected keyword argument 'pillar'"),
        ([], {}, "missing a required argument: 'mods'"),
    ],
)
def test_bad_state_calls(
    commands: Commands, state_dir: Path, args: list[Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        execute(commands, "state.sls", *args, **kwargs)
    assert not (state_dir / "rendered").exists()


def test_state_apply_without_sls(commands: Commands) -> None:
    with pytest.raises(CommandError, match="highstate is not available"):
        execute(commands, "state.apply")
