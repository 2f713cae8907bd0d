"""The modem configuration that `state.sls network.wwan.qmi.config` renders from the APN
settings (docs/device-commands.md, "Modem (QMI)").

The file has the form of libqmi's `qmi-network` profile (`APN=`, `APN_USER=`, `APN_PASS=`),
plus the SIM `PIN` and the interface's `MTU`. `qmi-network` reads its profile as shell
assignments, so every string is written single-quoted (a `'` inside as `'\\''`): whatever
the settings hold, the file assigns exactly that and runs nothing. The settings are
validated on their way in (`device_agent.commands.apn`); the quoting does not rely on it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["render_qmi_network"]


def render_qmi_network(settings: dict[str, Any]) -> str:
    """The profile's text for validated APN settings (`ApnSettings.get()`)."""
    lines = [
        "# Rendered from the APN settings by state.sls network.wwan.qmi.config.",
        "# PUT /dongle/<unit_id>/settings/apn/ and run the state again rather than editing.",
        f"APN={_quote(settings['apn'])}",
        f"APN_USER={_quote(settings['user'])}",
        f"APN_PASS={_quote(settings['pass'])}",
        f"PIN={_quote(settings['pin'])}",
        f"MTU={int(settings['mtu'])}",
    ]
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    """A POSIX shell single-quoted word that stands for exactly `value`."""
    return "'" + value.replace("'", "'\\''") + "'"
