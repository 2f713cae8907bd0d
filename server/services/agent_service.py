"""AgentService: the device link's stream (docs/device-link.md).

The rpc is public at the interceptor and authenticates its first message, the Hello. Then
a reader task hands each Result to its waiting caller and each Upload to the link's
`Uploads` (stored in tasks of their own), while this generator writes what the link queues
(Invoke, Cancel, upload answers), so a slow reader never blocks the writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable

import grpc
from thingwire.agent.v1 import agent_pb2

from server import errors
from server.auth.device_tokens import open_link_with_token
from server.interceptors import bounded, status_for
from server.link.link import (
    DeviceKey,
    Link,
    LinkClosed,
    LinkLimits,
    Resource,
    is_json,
)
from server.link.secret_checks import LinkSecretChecks
from server.link.uploads import Uploads
from server.request_origin import client_of
from server.state import AppState
from server.storage import link_secrets
from server.storage.devices import INVALID_DEVICE
from server.storage.link_secrets import LinkDevice
from server.storage.models import Device

log = logging.getLogger(__name__)

MAX_RESOURCE_NAME = 64
#: Bounds of what one device may declare: its declarations live as long as its link, and a
#: device must not hold megabytes of the server's memory (or of every /api answer).
MAX_RESOURCES = 512
MAX_DESCRIPTION = 1024
MAX_EXAMPLE_BYTES = 4096
NO_HELLO = "the first message must be a Hello"
ONE_HELLO = "only the first message may be a Hello"
NO_HELLO_IN_TIME = "no Hello within {seconds:g} s"
TOO_MANY_OPENING = "too many devices are connecting at once; retry later"
RETRY_OPENING_S = 1
KINDS = frozenset(agent_pb2.ResourceKind.values()) - {agent_pb2.RESOURCE_KIND_UNSPECIFIED}


class AgentService:
    """Servicer of `thingwire.agent.v1.AgentService`."""

    def __init__(self, state: AppState) -> None:
        self._state = state
        self._link_secrets = LinkSecretChecks(state.database)
        #: Hellos being checked, from their arrival to the Welcome (LinkLimits.max_links_opening).
        self._opening = 0

    async def Connect(
        self, requests: AsyncIterator[agent_pb2.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.ConnectResponse]:
        limits: LinkLimits = self._state.link_limits
        first = await self._hello(requests, limits.hello_timeout_s)
        hello = first.hello
        resources = declared_resources(hello.resources)
        if self._opening >= limits.max_links_opening:
            # A fleet coming back faster than links can be opened is turned away at once,
            # to retry with its backoff, rather than every Hello waiting in a queue until
            # it times out. Only Hellos being checked hold a slot: a stream that sends
            # nothing holds none, so silent streams cannot lock real devices out
            # (docs/device-link.md, "Many devices at once").
            raise errors.Throttled(TOO_MANY_OPENING, RETRY_OPENING_S)
        self._opening += 1
        try:
            device, secret, link_token_id = await self._open(hello, client_of(context))
        finally:
            self._opening -= 1
        links, stats = self._state.links, self._state.link_stats
        link = Link(
            DeviceKey(device.user_id, device.device_id),
            resources,
            limits.max_calls_in_flight,
            device_pk=device.pk,
            # Through the gateway, the device's address (x-forwarded-for), not Envoy's.
            ip_address=client_of(context),
            connected_time=self._state.clock(),
            on_change=self._changed,
            link_token_id=link_token_id,
        )
        link.received(first)
        links.attach(link)
        stats.attached(link)
        await links.published(link)  # with replicas: reachable from all before the Welcome
        uploads = Uploads(
            link,
            self._state.telemetry,
            max_bytes=limits.max_upload_bytes,
            max_records=limits.max_upload_records,
            max_in_flight=limits.max_uploads_in_flight,
        )
        reader = asyncio.create_task(_read(requests, link, uploads))
        try:
            welcome = agent_pb2.ConnectResponse(
                welcome=agent_pb2.Welcome(
                    link_secret=secret,
                    max_calls_in_flight=limits.max_calls_in_flight,
                    max_upload_bytes=limits.max_upload_bytes,
                    max_upload_records=limits.max_upload_records,
                    max_uploads_in_flight=limits.max_uploads_in_flight,
                    unit_id=device.unit_id,
                )
            )
            link.sent(welcome)
            yield welcome
            async for message in link.outgoing():
                yield message
        finally:
            reader.cancel()
            link.close(errors.Unavailable("the link was closed"))
            if links.get(link.key) is link:  # not replaced: the device is offline now
                stats.detached(link)
            links.detach(link)
            await uploads.finish()
        closed = link.closed
        if closed is not None and not isinstance(closed, LinkClosed):
            # The stream ends with the status set, not raised: an abort leaves a reference
            # cycle in grpc (its error holds the call, which holds the error), and at a
            # restart 10,000 of those kept every ended stream alive until the event loop
            # closed their generators one by one (docs/device-link.md, "Many devices at
            # once").
            context.set_code(status_for(closed))
            context.set_details(bounded(closed.message))

    @staticmethod
    async def _hello(
        requests: AsyncIterator[agent_pb2.ConnectRequest], timeout_s: float
    ) -> agent_pb2.ConnectRequest:
        """The stream's first message, a Hello; DeadlineExceeded or InvalidArgument."""
        try:
            first = await asyncio.wait_for(anext(aiter(requests), None), timeout_s)
        except TimeoutError:
            raise errors.DeadlineExceeded(NO_HELLO_IN_TIME.format(seconds=timeout_s)) from None
        if first is None or first.WhichOneof("kind") != "hello":
            raise errors.InvalidArgument(NO_HELLO)
        return first

    def _changed(self, link: Link) -> None:
        """A link's byte counts moved: written with the next round, and watchers woken."""
        self._state.link_stats.changed(link)
        self._state.links.notify(link.key)

    async def _open(
        self, hello: agent_pb2.Hello, client: str
    ) -> tuple[LinkDevice, str, str | None]:
        """The device, its new link secret ("" unless it opened with its credentials) and
        the id of the link token it opened with (None for other secrets), or
        Unauthenticated. A link token opens the link without a link secret: checking it
        is already cheap (one HMAC and one query)."""
        database = self._state.database
        which = hello.WhichOneof("secret")
        if which == "credentials":
            # argon2 runs in the password pool, admitted like a login: a flood of made-up
            # credentials is turned away (RESOURCE_EXHAUSTED) instead of stalling the
            # database's worker pool for every other rpc.
            found = await database.run(
                lambda s: link_secrets.credentials_of(s, hello.user, hello.device)
            )
            stored = found[1] if found is not None else None
            ok = await self._state.logins.verify(stored, hello.credentials, client)
            if found is None or not ok:
                raise errors.Unauthenticated(INVALID_DEVICE)
            pk = found[0]
            device, secret = await database.run(lambda s: link_secrets.issue_link_secret(s, pk))
            return _link_device(device), secret, None
        if which == "link_secret":
            # A reconnecting fleet's Hellos share their queries (server/link/secret_checks.py).
            opened = await self._link_secrets.check(hello.user, hello.device, hello.link_secret)
            return opened, "", None
        if which == "device_token":
            signer, now = self._state.signer, self._state.clock()
            device, token_id = await database.run(
                lambda s: open_link_with_token(
                    s, signer, hello.user, hello.device, hello.device_token, now
                )
            )
            return _link_device(device), "", token_id
        raise errors.Unauthenticated("the Hello carries no credentials")


def _link_device(device: Device) -> LinkDevice:
    return LinkDevice(device.id, device.user_id, device.device_id, device.unit_id)


def declared_resources(
    declarations: Iterable[agent_pb2.ResourceDeclaration],
) -> dict[str, Resource]:
    """The Hello's declarations by name; InvalidArgument for a bad or repeated one, or for
    more (or larger) ones than a device may declare."""
    resources: dict[str, Resource] = {}
    for item in declarations:
        if len(resources) == MAX_RESOURCES:
            raise errors.InvalidArgument(f"a device declares at most {MAX_RESOURCES} resources")
        name = item.name
        if not name or len(name) > MAX_RESOURCE_NAME:
            raise errors.InvalidArgument(
                f"resource names have 1 to {MAX_RESOURCE_NAME} characters: {name!r}"
            )
        if name in resources:
            raise errors.InvalidArgument(f"resource {name!r} is declared twice")
        if item.kind not in KINDS:
            raise errors.InvalidArgument(f"resource {name!r} has no kind")
        if len(item.description) > MAX_DESCRIPTION:
            raise errors.InvalidArgument(
                f"resource {name!r}: descriptions have at most {MAX_DESCRIPTION} characters"
            )
        example = item.example if item.HasField("example") else None
        if example is not None and (example.ByteSize() > MAX_EXAMPLE_BYTES or not is_json(example)):
            raise errors.InvalidArgument(
                f"resource {name!r}: an example is JSON of at most {MAX_EXAMPLE_BYTES} bytes"
            )
        resources[name] = Resource(name, item.kind, item.description, example)
    return resources


async def _read(
    requests: AsyncIterator[agent_pb2.ConnectRequest], link: Link, uploads: Uploads
) -> None:
    """Hand each Result and CommandResult to its caller and each Upload to be stored;
    close the link when the device stops or misbehaves."""
    try:
        async for message in requests:
            link.received(message)
            kind = message.WhichOneof("kind")
            if kind == "result":
                link.deliver(message.result)
            elif kind == "command_result":
                link.deliver(message.command_result)
            elif kind == "upload":
                uploads.receive(message.upload)  # stored in a task: Results never wait
            else:
                raise errors.InvalidArgument(ONE_HELLO)
            if link.closed is not None:  # closed meanwhile (it did not read its answers)
                return
            # Messages already buffered are read without suspending: without a turn here,
            # one device's flood would hold the event loop and stall every other call.
            await asyncio.sleep(0)
        link.close(LinkClosed("the device closed the link"))
    except errors.ThingwireError as error:
        link.close(error)
    except asyncio.CancelledError:
        raise
    except Exception:  # the transport failed under us: the device is gone
        log.debug("link of %s ended", link.key, exc_info=True)
        link.close(errors.Unavailable("the device's connection failed"))
