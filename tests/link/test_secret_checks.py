"""Link secrets checked in batches (server/link/secret_checks.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from server import errors
from server.link.secret_checks import LinkSecretChecks
from server.security.hashing import hash_secret
from server.storage import devices, users
from server.storage.db import Database
from server.storage.link_secrets import LinkDevice
from server.storage.models import Device

DEVICES = 40


class CountingDatabase:
    """The database, counting the units of work run through it (and able to fail them)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.runs = 0
        self.failing = False

    async def run(self, fn: Callable[[Any], Any]) -> Any:
        self.runs += 1
        if self.failing:
            raise ConnectionError("the database went away")
        return await self.database.run(fn)


@pytest.fixture
def fleet(database: Database) -> dict[str, int]:
    """User `ada` with devices d0..d39, each with the link secret `secret-N`; their pks."""
    pks = {}
    with database.session() as s:
        user = users.create_user(s, "ada@example.com", "a-long-password", username="ada")
        for n in range(DEVICES):
            device, _ = devices.create_device(s, user.id, f"d{n}", "credentials")
            device.link_secret_hash = hash_secret(f"secret-{n}")
            s.flush()
            pks[f"d{n}"] = device.id
    return pks


def checks(database: CountingDatabase, max_batch: int = 500) -> LinkSecretChecks:
    return LinkSecretChecks(database, max_batch)  # type: ignore[arg-type]


def test_hellos_arriving_together_share_one_query(
    database: Database, fleet: dict[str, int]
) -> None:
    counting = CountingDatabase(database)

    async def scenario() -> list[LinkDevice]:
        checker = checks(counting)
        return await asyncio.gather(
            *(checker.check("ada", f"d{n}", f"secret-{n}") for n in range(DEVICES))
        )

    opened = asyncio.run(scenario())
    assert [device.pk for device in opened] == [fleet[f"d{n}"] for n in range(DEVICES)]
    assert {device.device_id for device in opened} == set(fleet)
    # The lookup starts on the loop's next turn: every Hello of this turn is in it.
    assert counting.runs == 1


def test_batches_are_bounded(database: Database, fleet: dict[str, int]) -> None:
    counting = CountingDatabase(database)

    async def scenario() -> list[LinkDevice]:
        checker = checks(counting, max_batch=8)
        return await asyncio.gather(
            *(checker.check("ada", f"d{n}", f"secret-{n}") for n in range(DEVICES))
        )

    assert len(asyncio.run(scenario())) == DEVICES
    assert counting.runs == DEVICES // 8


@pytest.mark.parametrize(
    ("user", "device", "secret"),
    [
        ("ada", "d1", "secret-2"),  # another device's secret
        ("ada", "d1", ""),
        ("ada", "nobody", "secret-1"),
        ("bob", "d1", "secret-1"),
        ("ada\x00", "d1", "secret-1"),  # never reaches SQL (PostgreSQL refuses a NUL)
        ("ada", "d 1", "secret-1"),
        ("", "d1", "secret-1"),
    ],
)
def test_a_wrong_secret_fails_alone(
    database: Database, fleet: dict[str, int], user: str, device: str, secret: str
) -> None:
    """In the same batch as good Hellos, a bad one is refused and the others open."""

    async def scenario() -> list[LinkDevice | BaseException]:
        checker = checks(CountingDatabase(database))
        outcomes = await asyncio.gather(
            checker.check("ada", "d0", "secret-0"),
            checker.check(user, device, secret),
            checker.check("ada", "d3", "secret-3"),
            return_exceptions=True,
        )
        return list(outcomes)

    first, bad, last = asyncio.run(scenario())
    assert isinstance(first, LinkDevice)
    assert first.pk == fleet["d0"]
    assert isinstance(bad, errors.Unauthenticated)
    assert bad.message == "invalid device credentials"
    assert isinstance(last, LinkDevice)
    assert last.pk == fleet["d3"]


def test_a_device_without_a_link_secret_is_refused(
    database: Database, fleet: dict[str, int]
) -> None:
    with database.session() as s:
        stored = s.get(Device, fleet["d5"])
        assert stored is not None
        stored.link_secret_hash = None

    async def scenario() -> None:
        await checks(CountingDatabase(database)).check("ada", "d5", "secret-5")

    with pytest.raises(errors.Unauthenticated):
        asyncio.run(scenario())


def test_a_database_failure_fails_its_batch_and_the_next_one_works(
    database: Database, fleet: dict[str, int]
) -> None:
    counting = CountingDatabase(database)

    async def scenario() -> tuple[list[LinkDevice | BaseException], LinkDevice]:
        checker = checks(counting)
        counting.failing = True
        failed = await asyncio.gather(
            *(checker.check("ada", f"d{n}", f"secret-{n}") for n in range(3)),
            return_exceptions=True,
        )
        counting.failing = False
        return failed, await checker.check("ada", "d7", "secret-7")

    failed, later = asyncio.run(scenario())
    assert all(isinstance(outcome, ConnectionError) for outcome in failed)
    assert later.pk == fleet["d7"]


def test_a_hello_whose_stream_ended_does_not_disturb_the_others(
    database: Database, fleet: dict[str, int]
) -> None:
    async def scenario() -> list[object]:
        checker = checks(CountingDatabase(database))
        waiting = [
            asyncio.create_task(checker.check("ada", f"d{n}", f"secret-{n}")) for n in range(5)
        ]
        await asyncio.sleep(0)
        waiting[2].cancel()
        return await asyncio.gather(*waiting, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[2], asyncio.CancelledError)
    opened = [o for n, o in enumerate(outcomes) if n != 2]
    assert [o.pk for o in opened if isinstance(o, LinkDevice)] == [
        fleet[f"d{n}"] for n in (0, 1, 3, 4)
    ]
