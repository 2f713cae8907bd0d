"""A command registry on a fresh state directory, and a way to run its coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from device_agent.commands import Commands, CommandSettings

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on its own event loop (the suite does not use an asyncio plugin)."""
    return asyncio.run(coroutine)


def execute(commands: Commands, command: str, *args: Any, **kwargs: Any) -> Any:
    """`commands.execute(command, args, kwargs)`, run to its end."""
    return run(commands.execute(command, list(args), kwargs))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent"


@pytest.fixture
def commands(state_dir: Path) -> Commands:
    return Commands(state_dir, CommandSettings())
