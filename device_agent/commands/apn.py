"""The modem's APN settings: what the Local API's `GET`/`PUT /dongle/<unit_id>/settings/apn/`
read and replace, and what `state.sls network.wwan.qmi.config` renders
(docs/device-commands.md, "APN settings").

Kept in `<state dir>/settings/apn.json` (owner-only: it holds the APN password and the SIM
PIN), written atomically. A PUT replaces the settings: keys it leaves out go back to their
defaults, as AutoPi's own firmware does, so that what a client sent is what it reads back.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from device_agent.commands.errors import CommandError, CommandUnavailable
from device_agent.commands.settings import StatePaths
from device_agent.commands.values import as_int, kind
from device_agent.state_files import StateFileError, read_json, write_json

__all__ = ["APN_KEYS", "DEFAULT_MTU", "MAX_MTU", "MIN_MTU", "ApnSettings", "validate_apn"]

#: The only keys of the document's APN body, in its order.
APN_KEYS = ("apn", "user", "pass", "pin", "mtu")
DEFAULT_MTU = 1500
#: IPv4's minimum datagram size every link must carry, and a jumbo frame's size.
MIN_MTU = 576
MAX_MTU = 9000
#: An access point name: labels of letters, digits and hyphens (3GPP TS 23.003) joined by
#: dots; underscores occur in operators' APNs in the wild and are accepted too.
_APN = re.compile(r"[A-Za-z0-9._-]{0,100}")
#: A SIM PIN is 4 to 8 digits (3GPP TS 31.101); empty means no PIN.
_PIN = re.compile(r"(?:[0-9]{4,8})?")
MAX_CREDENTIAL_LENGTH = 255

DEFAULTS: dict[str, Any] = {"apn": "", "user": "", "pass": "", "pin": "", "mtu": DEFAULT_MTU}


class ApnSettings:
    """Reads and replaces the APN settings file. Synchronous and thread-safe: the file is
    small; callers on an event loop may run these in a thread (`asyncio.to_thread`)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = StatePaths(state_dir).apn
        self._lock = threading.Lock()

    def get(self) -> dict[str, Any]:
        """The settings, exactly the keys `apn`, `user`, `pass`, `pin`, `mtu`.

        Defaults (empty strings, mtu 1500) until a PUT. A stored file that is not valid
        raises CommandUnavailable naming it; it is never replaced silently.
        """
        with self._lock:
            return self._load()

    def put(self, body: Any) -> dict[str, Any]:
        """Validate `body` (a JSON object), store it and return the stored settings.

        Raises CommandError naming the first problem: not an object, an unknown key, a
        wrong type, an APN, PIN or MTU out of range. Keys left out take their defaults.
        """
        settings = validate_apn(body)
        with self._lock:
            self._load()  # a corrupt file is reported, not overwritten unseen
            try:
                write_json(self.path, settings)
            except OSError as exc:
                raise CommandUnavailable(f"cannot store the APN settings: {exc}") from exc
        return dict(settings)

    def _load(self) -> dict[str, Any]:
        try:
            stored = read_json(self.path, None)
        except StateFileError as exc:
            raise CommandUnavailable(f"the APN settings cannot be read: {exc}") from exc
        if stored is None:
            return dict(DEFAULTS)
        try:
            return validate_apn(stored)
        except CommandError as exc:
            raise CommandUnavailable(f"the APN settings in {self.path} are invalid: {exc}") from exc


def validate_apn(body: Any) -> dict[str, Any]:
    """The settings `body` stands for, all five keys present; CommandError if it is not one.

    An MTU may arrive as a whole-valued float (1280.0): JSON carried through protobuf's
    `Struct` has only doubles. A bool is never a number here.
    """
    if not isinstance(body, dict):
        raise CommandError(f"APN settings must be a JSON object, not {kind(body)}")
    unknown = sorted(str(key) for key in body if key not in APN_KEYS)
    if unknown:
        raise CommandError(
            f"unknown APN setting {', '.join(repr(key) for key in unknown)}; "
            f"allowed keys: {', '.join(APN_KEYS)}"
        )
    settings = dict(DEFAULTS)
    for key in ("apn", "user", "pass", "pin"):
        if key not in body:
            continue
        value = body[key]
        if not isinstance(value, str):
            raise CommandError(f"APN setting '{key}' must be a string, not {kind(value)}")
        settings[key] = value
    if not _APN.fullmatch(settings["apn"]):
        raise CommandError("APN setting 'apn' must be at most 100 letters, digits, '.', '-' or '_'")
    for key in ("user", "pass"):
        value = settings[key]
        if len(value) > MAX_CREDENTIAL_LENGTH:
            raise CommandError(f"APN setting '{key}' is longer than {MAX_CREDENTIAL_LENGTH}")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise CommandError(f"APN setting '{key}' must not contain control characters")
    if not _PIN.fullmatch(settings["pin"]):
        raise CommandError("APN setting 'pin' must be empty or 4 to 8 digits")
    if "mtu" in body:
        settings["mtu"] = _mtu(body["mtu"])
    return settings


def _mtu(value: Any) -> int:
    mtu = as_int(value)
    if mtu is None:
        raise CommandError(f"APN setting 'mtu' must be an integer, not {kind(value)}")
    if not MIN_MTU <= mtu <= MAX_MTU:
        raise CommandError(f"APN setting 'mtu' must be between {MIN_MTU} and {MAX_MTU}: {mtu}")
    return mtu
