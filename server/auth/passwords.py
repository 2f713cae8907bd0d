"""Password logins, with argon2 kept off the pool every other call's database work uses.

argon2 is slow on purpose (~0.1 s a check). Run in the shared worker pool, a flood of
logins — real or for made-up names — would queue every other rpc behind it. Here password
checks get a small pool of their own, and once enough logins are waiting, further ones are
refused at once with RESOURCE_EXHAUSTED (429) instead of piling up.

That capacity is shared between clients: one client address may hold only a few of its
places at a time, so a flood of logins from one address cannot turn away everyone else's.

A reservation that reaches an account's ceiling locks it while its password is checked
(`server.storage.login_throttle`): that is what stops parallel guesses. The owner's own
parallel logins would meet that lock too, although a right password takes it back a moment
later; so a login turned away while this process is checking the same login waits for
those checks (briefly) and tries again. Across replicas such parallel logins still meet the
lock and get 429 with a Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from server.errors import Throttled
from server.security.hashing import verify_password
from server.storage import users
from server.storage.db import Database
from server.storage.models import User

# Logins allowed to wait for a password check, beyond those being checked.
MAX_WAITING_LOGINS = 64
# Logins one client address may have in progress (checked or waiting) at a time.
MAX_CHECKS_PER_CLIENT = 8
BUSY = "too many logins in progress; retry shortly"
# How long a login turned away by a lock waits for this process's checks of the same login.
PENDING_WAIT_SECONDS = 2.0


class PasswordLogins:
    """Checks login + password: throttle reservation, argon2 in its own pool, then the user."""

    def __init__(
        self,
        database: Database,
        workers: int | None = None,
        max_waiting: int = MAX_WAITING_LOGINS,
        max_per_client: int = MAX_CHECKS_PER_CLIENT,
    ) -> None:
        self._db = database
        workers = workers or os.cpu_count() or 2
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._capacity = workers + max_waiting
        self._per_client = max_per_client
        # Only touched on the event loop's thread.
        self._in_flight = 0
        self._by_client: Counter[str] = Counter()
        self._withdrawals: set[asyncio.Future[None]] = set()
        # Per login text: logins under way, logins ended so far, and an event set (then
        # replaced) when the next one ends.
        self._checks: Counter[str] = Counter()
        self._finished: Counter[str] = Counter()
        self._finish_events: dict[str, asyncio.Event] = {}

    async def check(self, login: str, password: str, client: str, now: datetime) -> User:
        """The user, or Throttled / Unauthenticated (see users.begin_login).

        `client` is the caller's address (`server.request_origin.client_of`).
        """
        if self._in_flight >= self._capacity or self._by_client[client] >= self._per_client:
            raise Throttled(BUSY, retry_after=1)
        self._in_flight += 1
        self._by_client[client] += 1
        key = _login_key(login)
        self._checks[key] += 1
        try:
            attempt = await self._reserve(login, client, now, key)
            loop = asyncio.get_running_loop()
            try:
                ok = await loop.run_in_executor(
                    self._executor, verify_password, attempt.password_hash, password
                )
            except asyncio.CancelledError:
                self._withdraw(attempt)
                raise
            return await self._db.run(lambda s: users.finish_login(s, attempt, ok, password))
        finally:
            self._in_flight -= 1
            self._by_client[client] -= 1
            if not self._by_client[client]:
                del self._by_client[client]
            self._checks[key] -= 1
            self._finished[key] += 1
            if not self._checks[key]:  # nobody waits on this login: forget it
                del self._checks[key], self._finished[key]
            finished = self._finish_events.pop(key, None)
            if finished is not None:
                finished.set()

    async def verify(self, password_hash: str | None, password: str, client: str) -> bool:
        """One argon2 check of another kind of secret (a device's credentials) in this pool,
        admitted like a login: Throttled at once past the capacity or the client's share.

        So a flood of link opens with made-up credentials queues here, not in the worker
        pool every rpc's database work uses (docs/device-link.md).
        """
        if self._in_flight >= self._capacity or self._by_client[client] >= self._per_client:
            raise Throttled(BUSY, retry_after=1)
        self._in_flight += 1
        self._by_client[client] += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, verify_password, password_hash, password
            )
        finally:
            self._in_flight -= 1
            self._by_client[client] -= 1
            if not self._by_client[client]:
                del self._by_client[client]

    async def _reserve(
        self, login: str, client: str, now: datetime, key: str
    ) -> users.LoginAttempt:
        """Reserve the attempt; when a lock turns it away while this process has other
        logins of the same text under way, wait for one of them to end and try again, for
        `PENDING_WAIT_SECONDS` at most (a right password among them takes its lock back; a
        wrong one's lock stays and refuses the retry)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PENDING_WAIT_SECONDS
        while True:
            finished_before = self._finished[key]
            try:
                return await self._begin(login, client, now)
            except Throttled:
                remaining = deadline - loop.time()
                if remaining <= 0 or self._checks[key] <= 1:
                    raise
            if self._finished[key] != finished_before:
                continue  # one ended while we were turned away: its lock may be gone
            finished = self._finish_events.setdefault(key, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), remaining)

    async def _begin(self, login: str, client: str, now: datetime) -> users.LoginAttempt:
        # Shielded: a reservation committed in the worker thread after the caller went
        # away must still be known, so that it can be withdrawn.
        begin = asyncio.ensure_future(
            self._db.run(lambda s: users.begin_login(s, login, client, now))
        )
        try:
            return await asyncio.shield(begin)
        except asyncio.CancelledError:
            begin.add_done_callback(self._withdraw_when_reserved)
            raise

    def _withdraw_when_reserved(self, begin: asyncio.Future[users.LoginAttempt]) -> None:
        if not begin.cancelled() and begin.exception() is None:
            self._withdraw(begin.result())

    def _withdraw(self, attempt: users.LoginAttempt) -> None:
        """Withdraw a cancelled login's reservation in the background (the caller is gone;
        the task is kept until it ends, and `settled` waits for it)."""
        task = asyncio.ensure_future(self._db.run(lambda s: users.withdraw_login(s, attempt)))
        self._withdrawals.add(task)
        task.add_done_callback(self._withdrawals.discard)

    async def settled(self) -> None:
        """Wait until every cancelled login's reservation has been withdrawn."""
        while self._withdrawals:
            await asyncio.gather(*self._withdrawals, return_exceptions=True)

    def close(self) -> None:
        """Stop the pool; checks under way finish, nothing new starts."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _login_key(login: str) -> str:
    """The login text as a key for the checks under way (case folded, like emails)."""
    return login.strip().lower()
