"""The agent's settings: each comes from one THINGWIRE_* environment variable.

Names and defaults are the operator contract (docs/design.md, "Operator contract"). The
device side reads them here, not through `server.config`, so that it needs nothing of the
cloud.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Where the agent keeps its state: logs now; grains, settings and the outbox later.
DEFAULT_STATE_DIR = Path("var") / "agent"


@dataclass(frozen=True)
class AgentSettings:
    """What `thingwire agent` needs besides its command-line arguments."""

    state_dir: Path = DEFAULT_STATE_DIR

    @property
    def log_dir(self) -> Path:
        """`<state dir>/log`: `syslog` here is what the Local API's `/download_log/` serves."""
        return self.state_dir / "log"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        """Read the THINGWIRE_* variables, falling back to the documented defaults."""
        env = os.environ if env is None else env
        state_dir = env.get("THINGWIRE_AGENT_STATE_DIR", "")
        return cls(state_dir=Path(state_dir) if state_dir else cls.state_dir)
