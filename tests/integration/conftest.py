"""One real stack (server + Envoy) per module, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from tests.integration.stack import PASSWORD, Stack, stack_fixture

__all__ = ["PASSWORD"]


stack = stack_fixture()


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
