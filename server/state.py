"""What every servicer shares: the database, the token signer, password logins, the clock.

Passed explicitly to servicers (no globals), so tests build one with a fixed clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from server.auth.passwords import PasswordLogins
from server.clock import Clock, utc_now
from server.config import DEFAULT_MAX_DEVICES_PER_USER, Settings
from server.link.link import LinkLimits
from server.link.nats_links import NatsLinks
from server.link.nats_router import NatsRouter
from server.link.registry import LinkRegistry
from server.link.router import DeviceRouter, LocalRouter
from server.link.stats_store import StatsStore
from server.security.jwt_tokens import TokenSigner
from server.security.keys import KeyFile, KeyRing, adopt_database_key
from server.storage.db import Database
from server.telemetry.limits import TelemetryLimits
from server.telemetry.retention import Retention
from server.telemetry.writer import TelemetryWriter

__all__ = ["AppState", "open_database", "utc_now"]


def open_database(settings: Settings) -> Database:
    """The configured database, migrated, its signing key (from older versions) moved out.

    The key is moved before the migration that drops the table it was kept in, so tokens
    issued before the upgrade keep working. `thingwire serve` and the CLI both open it so.
    """
    database = Database(settings.db_url)
    adopt_database_key(database.engine, KeyFile(settings.jwt_key_file))
    database.migrate()
    return database


@dataclass(frozen=True)
class AppState:
    """Dependencies of the servicers and the auth interceptor."""

    database: Database
    signer: TokenSigner
    logins: PasswordLogins
    clock: Clock = field(default=utc_now)
    link_limits: LinkLimits = field(default_factory=LinkLimits)
    #: This process's live device links (presence lives here, never in a module global).
    links: LinkRegistry = field(default_factory=LinkRegistry)
    #: `Settings.max_devices_per_user`: devices one account may add (0: no limit).
    max_devices_per_user: int = DEFAULT_MAX_DEVICES_PER_USER
    #: `Settings.telemetry_retention_days`, applied by the maintenance task.
    retention: Retention = field(default_factory=lambda: Retention(days=0))
    #: `Settings.telemetry_*`: the queue, batch size and durability of telemetry ingest.
    telemetry_limits: TelemetryLimits = field(default_factory=TelemetryLimits)

    @cached_property
    def router(self) -> DeviceRouter:
        """The one way to call a device: over this process's links, or, for a replica
        (`links` shared through NATS), over NATS for devices held elsewhere."""
        if isinstance(self.links, NatsLinks):
            return NatsRouter(self.links)
        return LocalRouter(self.links)

    @cached_property
    def link_stats(self) -> StatsStore:
        """Writes the links' figures into the devices table, in batches."""
        return StatsStore(self.database, self.link_limits.stats_interval_s, self.clock)

    @cached_property
    def telemetry(self) -> TelemetryWriter:
        """Stores device records from every ingest face (HTTP push, the link)."""
        return TelemetryWriter(
            self.database,
            self.clock,
            max_queued=self.telemetry_limits.queue_batches,
            sqlite_synchronous=self.telemetry_limits.sqlite_synchronous,
        )

    @classmethod
    async def open(
        cls,
        database: Database,
        clock: Clock = utc_now,
        keys: KeyFile | KeyRing | None = None,
        link_limits: LinkLimits | None = None,
        max_devices_per_user: int = DEFAULT_MAX_DEVICES_PER_USER,
        retention: Retention | None = None,
        telemetry_limits: TelemetryLimits | None = None,
        links: LinkRegistry | None = None,
    ) -> AppState:
        """The state over ``database``, signing with ``keys``.

        ``thingwire serve`` passes the configured key file (replicas share it); without one, a
        fresh key lives in memory only, for tests and throwaway servers: its tokens die with it.
        """
        if isinstance(keys, KeyFile):
            keys.load(clock())
        return cls(
            database=database,
            signer=TokenSigner(keys or KeyRing.generate(clock())),
            logins=PasswordLogins(database),
            clock=clock,
            link_limits=link_limits or LinkLimits(),
            max_devices_per_user=max_devices_per_user,
            retention=retention or Retention(days=0),
            telemetry_limits=telemetry_limits or TelemetryLimits(),
            links=links if links is not None else LinkRegistry(),
        )
