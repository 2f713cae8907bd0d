"""The `wpa_supplicant.conf` that `state.sls network.wlan.client.config` renders from the
`wpa_supplicant:networks` grain (docs/device-commands.md, "Wi-Fi networks").

Each network is an object with `ssid` (required), `psk` (optional) and `priority`
(optional, default 0); `scan_ssid` (true for a hidden network) is accepted too. Networks are
written highest priority first (ties keep their order in the grain).

Quoting, so that no SSID or passphrase can break out of its line:

- an SSID of printable ASCII other than `"` and `\\` is written quoted (``ssid="Home"``);
  any other SSID (quotes, backslashes, newlines, control or non-ASCII characters) is written
  as the hex of its UTF-8 bytes (``ssid=486f6d65``), which wpa_supplicant reads as the same
  bytes;
- a passphrase (8 to 63 printable ASCII characters, IEEE 802.11i) is written quoted unless
  it contains `"` or `\\`; then the 256-bit key derived from it (PBKDF2-HMAC-SHA1 over the
  SSID, 4096 rounds, as `wpa_passphrase` computes it) is written as 64 hex digits;
- 64 hex digits given as `psk` are that key already and are written as they are;
- an empty or missing `psk` is an open network: ``key_mgmt=NONE``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from device_agent.commands.values import as_int, kind

__all__ = ["NETWORKS_GRAIN", "RenderError", "render_wpa_supplicant"]

NETWORKS_GRAIN = "wpa_supplicant:networks"
NETWORK_KEYS = ("ssid", "psk", "priority", "scan_ssid")
MAX_SSID_BYTES = 32
MAX_PRIORITY = 2**31 - 1
_RAW_PSK = re.compile(r"[0-9A-Fa-f]{64}")
_PLAIN = re.compile(r"[\x20-\x7e]*")
_UNQUOTABLE = frozenset('"\\')


class RenderError(ValueError):
    """The grain or settings cannot be rendered; the message says which entry and why."""


def render_wpa_supplicant(networks: Any, *, country: str, ctrl_interface: str) -> str:
    """The configuration file's text for `networks` (the grain's value; None: no networks)."""
    if networks is None:
        networks = []
    if not isinstance(networks, list):
        raise RenderError(f"the {NETWORKS_GRAIN} grain must be a list, not {kind(networks)}")
    blocks = [(_priority(i, n), i, _network(i, n)) for i, n in enumerate(networks)]
    blocks.sort(key=lambda block: (-block[0], block[1]))
    lines = [
        f"# Rendered from the {NETWORKS_GRAIN} grain by state.sls network.wlan.client.config.",
        "# Set the grain and run the state again rather than editing this file.",
        f"ctrl_interface={ctrl_interface}",
        "update_config=1",
        f"country={country}",
    ]
    for _, _, block in blocks:
        lines += ["", *block]
    return "\n".join(lines) + "\n"


def _network(index: int, network: Any) -> list[str]:
    if not isinstance(network, dict):
        raise RenderError(f"network {index + 1} must be an object, not {kind(network)}")
    unknown = sorted(str(key) for key in network if key not in NETWORK_KEYS)
    if unknown:
        raise RenderError(
            f"network {index + 1}: unknown key {', '.join(repr(key) for key in unknown)} "
            f"(known: {', '.join(NETWORK_KEYS)})"
        )
    ssid = network.get("ssid")
    if not isinstance(ssid, str) or not ssid:
        raise RenderError(f"network {index + 1} needs an 'ssid' (a non-empty string)")
    ssid_bytes = ssid.encode("utf-8")
    if len(ssid_bytes) > MAX_SSID_BYTES:
        raise RenderError(
            f"network {index + 1}: the ssid is {len(ssid_bytes)} bytes; at most "
            f"{MAX_SSID_BYTES} are allowed"
        )
    lines = ["network={", f"\tssid={_ssid(ssid)}"]
    if network.get("scan_ssid", False) not in (True, False, 0, 1):
        raise RenderError(f"network {index + 1}: scan_ssid must be true or false")
    if network.get("scan_ssid"):
        lines.append("\tscan_ssid=1")
    psk = network.get("psk")
    if psk is None or psk == "":
        lines.append("\tkey_mgmt=NONE")
    elif not isinstance(psk, str):
        raise RenderError(f"network {index + 1}: psk must be a string, not {kind(psk)}")
    elif _RAW_PSK.fullmatch(psk):
        lines.append(f"\tpsk={psk.lower()}")
    elif not 8 <= len(psk) <= 63 or not _PLAIN.fullmatch(psk):
        raise RenderError(
            f"network {index + 1} ({ssid!r}): psk must be 8 to 63 printable ASCII characters "
            f"(or 64 hex digits), got {len(psk)} characters"
        )
    elif _UNQUOTABLE.intersection(psk):
        derived = hashlib.pbkdf2_hmac("sha1", psk.encode("ascii"), ssid_bytes, 4096, 32)
        lines.append(f"\tpsk={derived.hex()}")
    else:
        lines.append(f'\tpsk="{psk}"')
    lines.append(f"\tpriority={_priority(index, network)}")
    lines.append("}")
    return lines


def _priority(index: int, network: Any) -> int:
    if not isinstance(network, dict) or "priority" not in network:
        return 0
    priority = as_int(network["priority"])
    if priority is None or not 0 <= priority <= MAX_PRIORITY:
        raise RenderError(
            f"network {index + 1}: priority must be a whole number from 0 to {MAX_PRIORITY}, "
            f"not {kind(network['priority'])}"
        )
    return priority


def _ssid(ssid: str) -> str:
    """``"Home"`` when it can be quoted safely, else the hex of its UTF-8 bytes."""
    if _PLAIN.fullmatch(ssid) and not _UNQUOTABLE.intersection(ssid):
        return f'"{ssid}"'
    return ssid.encode("utf-8").hex()
