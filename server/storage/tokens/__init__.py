"""Tokens, one module per kind: AutoPi API tokens, Thinger refresh tokens, Thinger user tokens.

Each kind has its own lifecycle and rules; what they share (the name rule, "the expiry
lies ahead", ownership) is in `_rules.py`. Secrets handed out are random and high-entropy,
so only their SHA-256 is stored and lookups go by that indexed hash; each is shown once.
The JWT signing key is not a token and is not in the database (`server/security/keys.py`).

The functions are re-exported here so that ``from server.storage import tokens`` keeps
working; new code imports the kind it needs (``from server.storage.tokens import
api_tokens``).
"""

from server.storage.tokens._rules import MAX_NAME_LENGTH
from server.storage.tokens.api_tokens import (
    authenticate_api_token,
    create_api_token,
    delete_api_token,
    list_api_tokens,
)
from server.storage.tokens.refresh_tokens import (
    INVALID_REFRESH,
    RefreshTokenReplayed,
    consume_refresh_token,
    issue_refresh_token,
    revoke_refresh_family,
    revoke_refresh_token,
)
from server.storage.tokens.user_tokens import (
    create_access_token,
    delete_access_token,
    get_active_access_token,
    list_access_tokens,
)

__all__ = [
    "INVALID_REFRESH",
    "MAX_NAME_LENGTH",
    "RefreshTokenReplayed",
    "authenticate_api_token",
    "consume_refresh_token",
    "create_access_token",
    "create_api_token",
    "delete_access_token",
    "delete_api_token",
    "get_active_access_token",
    "issue_refresh_token",
    "list_access_tokens",
    "list_api_tokens",
    "revoke_refresh_family",
    "revoke_refresh_token",
]
