"""Users most storage tests start from (tests/conftest.py provides the databases)."""

from __future__ import annotations

import pytest

from server.storage import users
from server.storage.db import Database
from server.storage.models import User


@pytest.fixture
def ada(database: Database) -> User:
    with database.session() as s:
        return users.create_user(s, "ada@example.com", "ada-password", "ada")


@pytest.fixture
def bob(database: Database) -> User:
    with database.session() as s:
        return users.create_user(s, "bob@example.com", "bob-password", "bob")
