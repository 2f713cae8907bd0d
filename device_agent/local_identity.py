"""Who the device is to the Local API: its unit id and the local user's token.

The unit id is the cloud's id of the device (`thingwire device create` prints it). The
agent keeps it in `<state dir>/minion_id`, as AutoPi keeps it in `/etc/salt/minion_id`, so
the Local API answers it while the cloud is unreachable. Given once (`--unit-id` or
THINGWIRE_AGENT_UNIT_ID) it is written there; never given, the agent makes one and says so
in its log (docs/device-side.md, "Identity").

The token is static, as the document says of it: an HMAC of a fixed text and the Local API's
password under a random key kept in `<state dir>/local_api.key` (owner-only). The agent can
check a token without storing it; a new key (delete the file) or a new password withdraws
every token handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import uuid
from pathlib import Path

from device_agent.state_files import read_text, write_atomically


def _stored(path: Path) -> str | None:
    """A one-line state file's text without its line end (hand-written files have one)."""
    text = read_text(path)
    return None if text is None else text.strip()


__all__ = ["LocalIdentity", "load_identity"]

log = logging.getLogger(__name__)

UNIT_ID_FILE = "minion_id"
KEY_FILE = "local_api.key"
_TOKEN_TEXT = b"thingwire local api: local user"
KEY_BYTES = 32


class LocalIdentity:
    """The device's unit id, and the token that its Local API hands out and checks."""

    def __init__(
        self, unit_id: str, key: bytes, password: str | None = None, path: Path | None = None
    ) -> None:
        self.unit_id = unit_id
        #: Where the unit id is kept (`adopt` writes it there).
        self._path = path
        # The password is part of what is signed: setting or changing it withdraws every
        # token handed out before (one given while the API was open included).
        signed = _TOKEN_TEXT + b"\x00" + (password or "").encode()
        self._token = (
            base64.urlsafe_b64encode(hmac.new(key, signed, hashlib.sha256).digest())
            .decode("ascii")
            .rstrip("=")
        )

    def adopt(self, unit_id: str) -> None:
        """The cloud's unit id (from a Welcome) replaces ours, here and in the state file,
        so that the Local API names the device as the cloud does; ValueError if not a UUID."""
        unit_id = _canonical_unit_id(unit_id)
        if unit_id == self.unit_id:
            return
        if self._path is not None:
            write_atomically(self._path, unit_id.encode(), mode=0o644)
        log.warning(
            "the cloud names this device %s (was %s): the Local API now does", unit_id, self.unit_id
        )
        self.unit_id = unit_id

    @property
    def token(self) -> str:
        return self._token

    def token_matches(self, presented: str) -> bool:
        """Constant-time: a wrong token takes as long to refuse whatever its prefix."""
        return hmac.compare_digest(presented.encode(), self._token.encode())


def _canonical_unit_id(text: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise ValueError(f"the unit id {text.strip()!r} is not a UUID") from None


def load_identity(
    state_dir: Path, unit_id: str | None, password: str | None = None
) -> LocalIdentity:
    """The identity kept in ``state_dir``; ``unit_id`` (if given) replaces the stored one.
    ``password`` is the Local API's, if it has one: the token depends on it.

    ValueError for a unit id that is not a UUID (given, or found in the file).
    """
    path = state_dir / UNIT_ID_FILE
    if unit_id:
        unit_id = _canonical_unit_id(unit_id)
        if _stored(path) != unit_id:
            write_atomically(path, unit_id.encode(), mode=0o644)
    else:
        stored = _stored(path)
        if stored is None:
            unit_id = str(uuid.uuid4())
            write_atomically(path, unit_id.encode(), mode=0o644)
            log.warning(
                "no unit id given (--unit-id or THINGWIRE_AGENT_UNIT_ID): made %s; give the "
                "cloud's unit id of this device so that both name it alike",
                unit_id,
            )
        else:
            unit_id = _canonical_unit_id(stored)
    key_path = state_dir / KEY_FILE
    key_text = _stored(key_path)
    if key_text is None or not _usable_key(key_text):
        if key_text is not None:
            log.warning("%s holds no usable key (32 bytes as hex): made a new one", key_path)
        key_text = secrets.token_hex(KEY_BYTES)
        write_atomically(key_path, key_text.encode(), mode=0o600)
    return LocalIdentity(unit_id, bytes.fromhex(key_text), password, path)


def _usable_key(text: str) -> bool:
    """KEY_BYTES or more as hex: an empty or short file must not become a guessable key."""
    try:
        return len(bytes.fromhex(text)) >= KEY_BYTES
    except ValueError:
        return False
