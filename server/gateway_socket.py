"""The Unix socket through which the gateway, and only the gateway, reaches the server.

Calls over it are believed when they say whose they are (`x-forwarded-for`, see
`server/request_origin.py`), so no one but the server's owner may open it: it lives in a
directory of its own with owner-only permissions (0700), and the socket itself is 0600.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

#: sockaddr_un holds 108 bytes on Linux, the final NUL included.
MAX_PATH_BYTES = 107


def grpc_address(path: Path) -> str:
    """Make `path` ready to be listened on and return its grpc address ("unix:/…").

    Raises OSError when the path is too long for a socket or another server answers on it;
    a socket left behind by a server that died is removed.
    """
    path = path.absolute()
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise OSError(
            f"cannot listen on {path}: a Unix socket path has at most {MAX_PATH_BYTES} bytes;"
            " run from a directory with a shorter path"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if path.is_socket():
        if _answers(path):
            raise OSError(f"cannot listen on {path}: another server is using it")
        path.unlink()
    return f"unix:{path}"


def restrict(path: Path) -> None:
    """Owner-only permissions on the socket, once the server has created it."""
    path.absolute().chmod(0o600)


def _answers(path: Path) -> bool:
    """Whether a server is listening on the socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe, contextlib.suppress(OSError):
        probe.connect(str(path))
        return True
    return False
