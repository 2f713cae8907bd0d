"""This replica's live links, shared with the other replicas through NATS.

`NatsLinks` is the `LinkRegistry` of a replica started with `THINGWIRE_NATS_URL`. It keeps
the registry's rules for the links it holds and adds what replicas need
(docs/architecture.md, "Scale-out"):

- **A subject per held device.** While a device's stream is here, the replica subscribes
  `thingwire.device.<user>.<device>` and answers calls, resource listings, figures, cancels
  and watch leases on it. A replica that does not hold the device gets NATS's "no
  responders" at once: the device is offline.
- **Presence.** Opening and closing a link is announced on `thingwire.presence.<u>.<d>`;
  every replica hears every announcement (one wildcard subscription) and wakes its event
  streams for that device. A device that connects on another replica replaces the link
  held here: the older link closes with FAILED_PRECONDITION, as a second connection on one
  process does; of two links announced at once the later-opened one stays.
- **Stats for watchers elsewhere.** An event stream for a device held elsewhere renews a
  lease on the device's subject; while the lease runs, the holder tells
  `thingwire.stats.<u>.<d>` (at most four times a second) that the figures changed.

NATS may be away at start or later: nats-py reconnects by itself (and re-subscribes), the
links held here keep working, and whatever needs the broker meanwhile fails Unavailable
(503), never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

import nats
import nats.errors
import sqlalchemy as sa
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from server import errors
from server.link import nats_wire as wire
from server.link.link import DeviceKey, Link
from server.link.registry import REPLACED, LinkRegistry
from server.link.router import OFFLINE
from server.storage.db import Database
from server.storage.models import Device

log = logging.getLogger(__name__)

#: What a call that needs the broker is told while it is away.
BROKER_DOWN = "the message broker (NATS) is unreachable; try again shortly"
#: A watcher renews its lease this often; the holder keeps it for `WATCH_LEASE_S`.
WATCH_RENEW_S = 5.0
WATCH_LEASE_S = 3 * WATCH_RENEW_S
#: At most one "figures changed" per device this often (the event stream's own frame rate).
STATS_MIN_INTERVAL_S = 0.25
#: How long to wait between attempts while NATS refuses the first connection.
CONNECT_RETRY_S = 1.0
#: How long a figures request waits (the holder answers from memory).
FIGURES_TIMEOUT_S = 2.0
#: The longest a new link waits for NATS to confirm its subscription before its Welcome.
PUBLISH_WAIT_S = 1.0
#: The longest a subscription's drain (or the last announcements at stop) may take.
RETIRE_WAIT_S = 2.0
#: Devices checked at once by the start-up sweep.
SWEEP_CONCURRENCY = 64


def since_us(link: Link) -> int:
    """When the link opened, in epoch µs: of two links of a device, the later one stays."""
    return int(link.connected_time.timestamp() * 1_000_000)


class NatsLinks(LinkRegistry):
    """The links held here, their subjects, and what other replicas announce."""

    def __init__(self, url: str, replica: str | None = None) -> None:
        super().__init__()
        self.url = url
        #: This replica's name in presence announcements (unique per process).
        self.replica = replica or secrets.token_hex(6)
        #: Told when a link here is replaced by one on another replica, after it has left
        #: the registry and before it closes (the stats store forgets it: its row is the
        #: other replica's to write now).
        self.on_replaced: Callable[[Link], None] | None = None
        #: Set once the first connection to NATS is up.
        self.ready = asyncio.Event()
        self._nc: Client | None = None
        self._subs: dict[DeviceKey, Subscription] = {}
        #: Subscribing, unsubscribing and announcing, in order, by one task.
        self._ops: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Calls served for other replicas, by their call id (for Cancel).
        self._calls: dict[str, asyncio.Task[None]] = {}
        #: Devices held here that a replica watches, with the loop time its lease ends.
        self._watched: dict[DeviceKey, float] = {}
        self._stats_due: set[DeviceKey] = set()
        #: Devices held elsewhere that event streams here watch: how many, and the task
        #: that keeps the lease.
        self._watching: dict[DeviceKey, tuple[int, asyncio.Task[None]]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._connector: asyncio.Task[None] | None = None
        self._sweep: Callable[[], Coroutine[Any, Any, None]] | None = None
        self._sweeping: asyncio.Task[None] | None = None

    # -- the connection ------------------------------------------------------------------

    def start(self, sweep: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        """Connect in the background (the server serves meanwhile); `sweep` runs once the
        broker answers, to reset devices that no replica holds."""
        self._sweep = sweep
        self._runner = asyncio.create_task(self._run_ops())
        self._connector = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        warned = False
        while True:
            try:
                nc = await nats.connect(
                    servers=self.url.split(","),
                    name=f"thingwire-{self.replica}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._error,
                )
                break
            except (OSError, nats.errors.Error, TimeoutError) as error:
                if not warned:
                    log.warning("NATS at %s is unreachable (%s); retrying", self.url, error)
                    warned = True
                await asyncio.sleep(CONNECT_RETRY_S)
        await nc.subscribe(wire.PRESENCE_ALL, cb=self._on_presence)
        self._nc = nc
        log.info("replica %s connected to NATS at %s", self.replica, self.url)
        for key in list(self._links):
            self._reconcile(key)
            self._announce(self._links[key], connected=True)
        self.ready.set()
        if self._sweep is not None:
            self._sweeping = asyncio.create_task(self._sweep())

    async def _disconnected(self) -> None:
        log.warning(
            "replica %s lost NATS; calls to other replicas fail until it is back", self.replica
        )

    async def _reconnected(self) -> None:
        log.info("replica %s reconnected to NATS", self.replica)
        # Another replica may have taken a device meanwhile, or missed an announcement.
        for link in list(self._links.values()):
            self._announce(link, connected=True)

    async def _error(self, error: Exception) -> None:
        log.debug("NATS: %s", error)

    @property
    def nc_connected(self) -> bool:
        """Whether NATS answers now."""
        return self._nc is not None and self._nc.is_connected

    @property
    def nc(self) -> Client:
        """The connection, or Unavailable while NATS is away."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise errors.Unavailable(BROKER_DOWN)
        return nc

    async def stop(self) -> None:
        """Announce what is left, then close the connection (after the server stopped).

        A sweep under way is let finish: cancelled, its database work would go on in its
        thread without anyone to return the connection to the pool."""
        if self._sweeping is not None:
            await asyncio.wait({self._sweeping}, timeout=10)
        for task in (self._connector, *self._calls.values(), *self._tasks):
            if task is not None:
                task.cancel()
        for _count, task in self._watching.values():
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ops.join(), RETIRE_WAIT_S)
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.flush(), 1.0)
            await self._nc.close()

    # -- the registry's events -----------------------------------------------------------

    def attach(self, link: Link) -> None:
        super().attach(link)
        self._reconcile(link.key)
        self._announce(link, connected=True)

    async def published(self, link: Link) -> None:
        """Until NATS has the device's subscription, so that a call from any replica that
        follows the Welcome finds it (at most `PUBLISH_WAIT_S`; at once while NATS is away:
        the link works here meanwhile, and is subscribed when NATS returns)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        queued: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def reached() -> None:
            if not queued.done():
                queued.set_result(None)

        self._queue(reached)  # after the reconcile that attach queued
        try:
            async with asyncio.timeout(PUBLISH_WAIT_S):
                await asyncio.shield(queued)
                await nc.flush()  # a PING answered: NATS has seen the SUB
        except (TimeoutError, nats.errors.Error):
            log.debug("subscription of %s not confirmed in time", link.key)

    def detach(self, link: Link) -> bool:
        was_live = super().detach(link)
        if was_live:
            self._reconcile(link.key)
            self._announce(link, connected=False)
        return was_live

    def notify(self, key: DeviceKey) -> None:
        super().notify(key)
        if key in self._watched and key not in self._stats_due:
            if self._watched[key] < asyncio.get_running_loop().time():
                del self._watched[key]
                return
            self._stats_due.add(key)
            asyncio.get_running_loop().call_later(STATS_MIN_INTERVAL_S, self._stats_now, key)

    def _stats_now(self, key: DeviceKey) -> None:
        self._stats_due.discard(key)
        self._publish(wire.stats_subject(key), b"")

    # -- ordered work on the connection --------------------------------------------------

    def _queue(self, op: Callable[[], Awaitable[None]]) -> None:
        self._ops.put_nowait(op)

    async def _run_ops(self) -> None:
        while True:
            op = await self._ops.get()
            try:
                await op()
            except Exception:  # the broker went away mid-way: reconnecting repairs it
                log.debug("NATS operation failed", exc_info=True)
            finally:
                self._ops.task_done()

    def _reconcile(self, key: DeviceKey) -> None:
        """Subscribe the device's subject while its link is here, and only then."""

        async def reconcile() -> None:
            nc = self._nc
            if nc is None:
                return  # subscribed when the connection comes up
            held, sub = key in self._links, self._subs.get(key)
            if held and sub is None:
                self._subs[key] = await nc.subscribe(wire.device_subject(key), cb=self._on_device)
            elif not held and sub is not None:
                del self._subs[key]
                self._watched.pop(key, None)
                self._spawn(self._retire(sub))  # a round trip: off the ordered queue

        self._queue(reconcile)

    async def _retire(self, sub: Subscription) -> None:
        """Drain, not unsubscribe: requests NATS delivered before it saw the UNSUB are still
        answered (NotFound) instead of dropped (a caller's timeout). While NATS is away the
        drain cannot complete: the UNSUB is sent when it returns, and nothing waits."""
        try:
            await asyncio.wait_for(sub.drain(), RETIRE_WAIT_S)
        except (TimeoutError, nats.errors.Error):
            log.debug("draining %s did not finish", sub.subject, exc_info=True)

    def _announce(self, link: Link, *, connected: bool) -> None:
        if self._nc is None:
            return
        payload = wire.encode_presence(self.replica, connected, since_us(link))
        self._publish(wire.presence_subject(link.key), payload)

    def _publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        async def publish() -> None:
            if self._nc is not None:
                await self._nc.publish(subject, payload, headers=headers)

        self._queue(publish)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task of its own, kept until it ends. The coroutine itself is the
        task: a task cancelled before its first step (at close) still closes it, where a
        wrapper around it would leave it never awaited."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what other replicas say ---------------------------------------------------------

    async def _on_presence(self, msg: Msg) -> None:
        key = wire.key_of(msg.subject)
        if key is None:
            return
        try:
            replica, connected, since = wire.decode_presence(msg.data)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed presence message on %s", msg.subject)
            return
        if replica == self.replica:
            return
        local = self._links.get(key)
        if connected and local is not None and (since_us(local), self.replica) < (since, replica):
            # The device connected again, on another replica: this link is the older one.
            LinkRegistry.detach(self, local)  # no "closed" announcement: it is live there
            self._reconcile(key)
            if self.on_replaced is not None:
                self.on_replaced(local)
            local.close(errors.FailedPrecondition(REPLACED))
        elif connected and local is not None:
            # This link is the newer one: say so again, so the other replica closes its own.
            self._announce(local, connected=True)
        LinkRegistry.notify(self, key)  # event streams here read the figures again
        if key in self._watching:
            self._publish(wire.device_subject(key), b"", {"Op": wire.OP_WATCH})

    async def _on_device(self, msg: Msg) -> None:
        """A message on a device's subject: answered here, the link's work in a task."""
        key = wire.key_of(msg.subject)
        headers = msg.headers or {}
        op = headers.get("Op")
        if key is None:
            return
        if op in (wire.OP_INVOKE, wire.OP_COMMAND):
            call = headers.get("Call", "")
            serve = self._serve_invoke if op == wire.OP_INVOKE else self._serve_command
            task = asyncio.create_task(serve(key, msg, headers))
            self._calls[call] = task
            task.add_done_callback(lambda _t: self._calls.pop(call, None))
        elif op == wire.OP_CANCEL:
            served = self._calls.get(headers.get("Call", ""))
            if served is not None:
                served.cancel()  # the link cancels the call on the device
        elif op == wire.OP_WATCH:
            self._watched[key] = asyncio.get_running_loop().time() + WATCH_LEASE_S
        elif op == wire.OP_CLOSE:
            link = self._links.get(key)
            token = headers.get("Token")
            if link is not None and (token is None or link.link_token_id == token):
                link.close(errors.FailedPrecondition(headers.get("Reason", "closed")))
        elif op in (wire.OP_RESOURCES, wire.OP_FIGURES) and msg.reply:
            self._spawn(self._serve_read(key, msg, op))

    def held(self, key: DeviceKey) -> Link:
        """The device's live link here; NotFound (offline) if there is none."""
        link = self._links.get(key)
        if link is None or link.closed is not None:
            raise errors.NotFound(OFFLINE.format(device=key.device_id))
        return link

    async def _serve_read(self, key: DeviceKey, msg: Msg, op: str) -> None:
        try:
            link = self.held(key)
        except errors.NotFound as error:
            await self._answer(msg, b"", wire.error_headers(error))
            return
        if op == wire.OP_RESOURCES:
            data = wire.encode_resources(list(link.resources.values()))
        else:
            data = wire.encode_figures(link.figures())
        await self._answer(msg, data, {"Status": wire.OK})

    async def _serve_invoke(self, key: DeviceKey, msg: Msg, headers: dict[str, str]) -> None:
        try:
            link = self.held(key)
            seconds = int(headers.get("Deadline-Ms", "0")) / 1000
            value = wire.decode_value(msg.data, headers.get("Value"))
            output = await link.invoke(
                wire.decode_name(headers.get("Resource", "")), value, seconds
            )
        except errors.ThingwireError as error:
            await self._answer(msg, b"", wire.error_headers(error))
            return
        data, present = wire.encode_value(output)
        await self._answer(msg, data, {"Status": wire.OK, "Value": present})

    async def _serve_command(self, key: DeviceKey, msg: Msg, headers: dict[str, str]) -> None:
        try:
            link = self.held(key)
            seconds = int(headers.get("Deadline-Ms", "0")) / 1000
            result = await link.command(wire.decode_command(msg.data), seconds)
        except errors.ThingwireError as error:
            await self._answer(msg, b"", wire.error_headers(error))
            return
        await self._answer(msg, result, {"Status": wire.OK})

    async def _answer(self, msg: Msg, data: bytes, headers: dict[str, str]) -> None:
        nc = self._nc
        if msg.reply and nc is not None:
            with contextlib.suppress(nats.errors.Error):
                try:
                    await nc.publish(msg.reply, data, headers=headers)
                except nats.errors.MaxPayloadError:
                    message = wire.TOO_LARGE.format(
                        what="answer", size=len(data), limit=nc.max_payload
                    )
                    await nc.publish(
                        msg.reply, b"", headers=wire.error_headers(errors.PayloadTooLarge(message))
                    )

    # -- watching devices held elsewhere -------------------------------------------------

    @contextlib.asynccontextmanager
    async def watching(self, key: DeviceKey) -> AsyncIterator[None]:
        """While an event stream here watches `key`: its holder, wherever it is, tells this
        replica when the figures change (and `next_change` wakes)."""
        if not wire.routable(key):  # no device has this id: nothing to watch anywhere
            yield
            return
        count, task = self._watching.get(key, (0, None))
        if task is None:
            task = asyncio.create_task(self._keep_watch(key))
        self._watching[key] = (count + 1, task)
        try:
            yield
        finally:
            count, task = self._watching[key]
            if count == 1:
                del self._watching[key]
                task.cancel()
            else:
                self._watching[key] = (count - 1, task)

    async def _keep_watch(self, key: DeviceKey) -> None:
        sub: Subscription | None = None
        try:
            while True:
                nc = self._nc
                if nc is not None and nc.is_connected:
                    if sub is None:
                        sub = await nc.subscribe(wire.stats_subject(key), cb=self._on_stats)
                    await nc.publish(wire.device_subject(key), b"", headers={"Op": wire.OP_WATCH})
                await asyncio.sleep(WATCH_RENEW_S)
        except nats.errors.Error:
            log.debug("watching %s: NATS failed", key, exc_info=True)
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _on_stats(self, msg: Msg) -> None:
        key = wire.key_of(msg.subject)
        if key is not None:
            LinkRegistry.notify(self, key)

    # -- the start-up sweep --------------------------------------------------------------

    async def sweep_unheld(
        self,
        database: Database,
        now: Callable[[], datetime],
        is_held: Callable[[DeviceKey], Awaitable[bool]],
    ) -> int:
        """Mark disconnected the devices left `connected` that no replica holds (their
        replica died). A row changed meanwhile (its device connected again) is left alone:
        the reset matches the `connected_time` it saw."""
        rows = await database.run(
            lambda s: s.execute(
                sa.select(Device.id, Device.user_id, Device.device_id, Device.connected_time).where(
                    Device.connected.is_(True)
                )
            ).all()
        )
        limit = asyncio.Semaphore(SWEEP_CONCURRENCY)

        async def unheld(row: Any) -> bool:
            async with limit:
                try:
                    return not await is_held(DeviceKey(row[1], row[2]))
                except errors.ThingwireError:
                    return False  # unknown (NATS away): left for the next start

        found = await asyncio.gather(*(unheld(row) for row in rows))
        stale = [
            {"pk": row[0], "seen": row[3], "now": now()}
            for row, gone in zip(rows, found, strict=True)
            if gone
        ]
        if stale:
            table = Device.__table__
            assert isinstance(table, sa.Table)
            statement = (
                sa.update(table)
                .where(
                    table.c.id == sa.bindparam("pk"),
                    table.c.connected.is_(True),
                    table.c.connected_time == sa.bindparam("seen"),
                )
                .values(connected=False, connected_time=sa.bindparam("now"))
            )
            await database.run(lambda s: s.execute(statement, stale))
            log.info("marked %d devices disconnected: no replica holds their link", len(stale))
        return len(stale)
