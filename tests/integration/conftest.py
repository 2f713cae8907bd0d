"""One real stack (server + Envoy) per module, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.stack import PASSWORD, Stack, running_stack

__all__ = ["PASSWORD"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, db_url_factory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    with running_stack(workdir, db_url_factory(workdir)) as running:
        yield running


@pytest.fixture(scope="module")
def ada(stack: Stack) -> dict:
    """A user created with the CLI, as an operator would."""
    return stack.cli_json(
        "user", "create", "--email", "ada@example.com", "--password", PASSWORD, "--username", "ada"
    )


@pytest.fixture(scope="module")
def bob(stack: Stack) -> dict:
    return stack.cli_json(
        "user", "create", "--email", "bob@example.com", "--password", PASSWORD, "--username", "bob"
    )
