"""`thingwire`: one command for both sides of an install.

`thingwire agent …` is the device's (`device_agent.cli`) and imports nothing of the cloud;
every other command is the cloud's (`server.cli`), imported only when asked for. So an
install with only `thingwire[agent]` (no SQLAlchemy, no argon2) runs its agent, and tells
an operator who asks it for a cloud command what to install.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

# serve spawns Envoy, which execs at once: gRPC's fork handlers are not needed, and with
# them on grpc core logs a warning at every spawn. Read when grpc initialises, so set first.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

#: Our own packages: a missing one is a broken install, not a missing extra.
OURS = frozenset({"server", "device_agent", "gateway", "thingwire", "thingwire_cli"})
DEVICE_ONLY_HELP = """\
usage: thingwire agent --server HOST:PORT --user U --device D --credentials C [--simulate]

This install has the device side of thingwire only: `thingwire agent --help` tells more.
The cloud's commands (serve, status, user, device, ...) need `thingwire[server]`.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["agent"]:
        from device_agent.cli import main as agent_main

        return agent_main(args[1:])
    try:
        from server.cli import main as cloud_main
    except ModuleNotFoundError as missing:
        if (missing.name or "").partition(".")[0] in OURS:
            raise
        return device_only(args, missing.name or "?")
    return cloud_main(args)


def device_only(args: list[str], missing: str) -> int:
    """What `thingwire` answers, without the cloud's packages, to anything but `agent`."""
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(DEVICE_ONLY_HELP)
        return 0 if args else 2
    print(
        f"thingwire: error: {args[0]!r} is a cloud command and this install has the device "
        f"side only (no module {missing!r}): install thingwire[server]",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
