"""One device's live link: its resources, its calls in flight and the messages to send it.

Answers are correlated by call id: one `asyncio.Future` per call in a dict owned by the link,
removed in a `finally`; a link that closes fails every pending future at once, so a caller
never waits for a deadline on a device that is gone (docs/device-link.md, "Failures").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from google.protobuf import struct_pb2
from google.protobuf.message import Message
from thingwire.agent.v1 import agent_pb2

from server import errors
from server.clock import utc_now
from server.link import commands

log = logging.getLogger(__name__)

Kind = agent_pb2.ResourceKind
#: Kinds that take an input value, and kinds that give an output value.
TAKES_INPUT = frozenset({Kind.RESOURCE_KIND_INPUT, Kind.RESOURCE_KIND_INPUT_OUTPUT})
GIVES_OUTPUT = frozenset({Kind.RESOURCE_KIND_OUTPUT, Kind.RESOURCE_KIND_INPUT_OUTPUT})
#: How long a throttled caller is told to wait before trying again.
RETRY_AFTER_SECONDS = 1
#: The largest input a call may carry: gRPC's default receive limit (4 MiB), which every
#: agent has unless it raised its own, less room for the rest of the Invoke. A larger
#: Invoke would make the device's gRPC end the whole stream: the device offline, all its
#: calls failed, by one caller's body.
MAX_INPUT_BYTES = 4 * 1024 * 1024 - 1024
#: Messages that may wait for a device to read them. A device that reads its stream never
#: has more than its calls and uploads in flight waiting (a few hundred at most); one that
#: stops reading while it keeps sending Uploads would otherwise make the server queue an
#: answer for each, without bound (docs/device-link.md, "Telemetry uploads").
MAX_OUTGOING_BACKLOG = 4096
NOT_READING = "the device does not read what the server sends it"
#: A device's answer to one call: a Result answers an Invoke, a CommandResult a Command.
Answer = agent_pb2.Result | agent_pb2.CommandResult
#: What a caller is told when the device answered a call with the other kind of answer.
WRONG_ANSWER = "the device answered the call with the wrong kind of answer"
#: What a caller is told of a device's answer that JSON cannot carry.
NOT_JSON_ANSWER = "the device reported an error: its answer is not JSON (NaN or infinity)"


@dataclass(frozen=True)
class DeviceKey:
    """Which device: its owner's user id and its device id (unique per owner)."""

    user_id: int
    device_id: str


@dataclass(frozen=True)
class Resource:
    """A resource a device declared on its link."""

    name: str
    kind: int
    description: str = ""
    example: struct_pb2.Value | None = None


@dataclass(frozen=True)
class LinkFigures:
    """A device's link statistics (Thinger's "stats"): those of its latest link.

    `connected_time` is when the link opened or, once closed, when it closed; the byte
    counts are those of the messages of that one link (docs/device-link.md, "Statistics").
    """

    connected: bool
    connected_time: datetime | None
    ip_address: str
    rx_bytes: int
    tx_bytes: int


#: Told of every change of a link's figures (bytes counted); must be cheap, it runs per message.
OnChange = Callable[["Link"], None]


class Link:
    """The server's side of one device stream.

    `invoke` is called by routers; `deliver` by the stream's reader task; `outgoing` is
    what the stream's writer sends. `close` ends it all: pending calls fail with `reason`.
    The link counts the bytes of the messages it receives (`received`) and sends, and tells
    `on_change` after each.
    """

    def __init__(
        self,
        key: DeviceKey,
        resources: Mapping[str, Resource],
        max_calls_in_flight: int,
        *,
        device_pk: int = 0,
        ip_address: str = "",
        connected_time: datetime | None = None,
        on_change: OnChange | None = None,
        link_token_id: str | None = None,
    ) -> None:
        self.key = key
        #: The link token this link was opened with (None: credentials or a link secret);
        #: deleting that token closes the link (docs/device-link.md, "The stream").
        self.link_token_id = link_token_id
        #: The device's row in the devices table, where the figures are kept.
        self.device_pk = device_pk
        self.resources = dict(resources)
        self.max_calls_in_flight = max_calls_in_flight
        self.ip_address = ip_address
        self.connected_time = connected_time or utc_now()
        #: Bytes of the messages received from and sent to the device on this link.
        self.rx_bytes = 0
        self.tx_bytes = 0
        self._on_change = on_change
        self._pending: dict[int, asyncio.Future[Answer]] = {}
        self._call_ids = itertools.count(1)
        #: The latest call id sent: a Result naming a later one answers no call ever made.
        self._last_call_id = 0
        self._outgoing: asyncio.Queue[agent_pb2.ConnectResponse | None] = asyncio.Queue()
        #: Why the link closed (None while it is open); the stream ends with this error.
        self.closed: errors.ThingwireError | None = None

    @property
    def calls_in_flight(self) -> int:
        return len(self._pending)

    def figures(self) -> LinkFigures:
        """The link's statistics now (connected while it is open)."""
        return LinkFigures(
            connected=self.closed is None,
            connected_time=self.connected_time,
            ip_address=self.ip_address,
            rx_bytes=self.rx_bytes,
            tx_bytes=self.tx_bytes,
        )

    def received(self, incoming: Message) -> None:
        """Count a message the device sent (its serialized size)."""
        self.rx_bytes += incoming.ByteSize()
        self._changed()

    def sent(self, outgoing: Message) -> None:
        """Count a message handed to the stream for the device."""
        self.tx_bytes += outgoing.ByteSize()
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self)

    async def invoke(
        self, resource: str, value: struct_pb2.Value | None, seconds: float
    ) -> struct_pb2.Value | None:
        """Run `resource` on the device and return its output (None if it gives none).

        NotFound for an undeclared resource, InvalidArgument when `value` is missing for a
        resource that takes an input or given to one that takes none, Throttled past the
        in-flight limit, DeadlineExceeded after `seconds`, Unavailable if the link closes
        first, FailedPrecondition carrying the device's message if its handler failed. A
        caller that is cancelled cancels the call on the device.
        """
        declared = self.resources.get(resource)
        if declared is None:
            raise errors.NotFound(f"resource {resource!r} not found")
        check_input(declared, value)
        if value is not None and value.ByteSize() > MAX_INPUT_BYTES:
            raise errors.InvalidArgument(
                f"the input is larger than a device accepts ({MAX_INPUT_BYTES} bytes)"
            )
        answer = await self._round_trip(
            lambda call_id, deadline_ms: _invoke_message(call_id, resource, value, deadline_ms),
            seconds,
        )
        if not isinstance(answer, agent_pb2.Result):
            raise errors.BadGateway(WRONG_ANSWER)
        if answer.WhichOneof("outcome") == "error":
            raise errors.FailedPrecondition(f"the device reported an error: {answer.error}")
        if not answer.HasField("output"):
            return None
        if not is_json(answer.output):
            # REST callers would get the gateway's 502: it cannot print NaN or infinity.
            raise errors.FailedPrecondition(NOT_JSON_ANSWER)
        return answer.output

    async def command(self, command: agent_pb2.Command, seconds: float) -> bytes:
        """Run a salt-style command on the device and return its result: one JSON value,
        the bytes the device wrote (docs/device-link.md, "Commands").

        `command`'s call id and deadline are set here. PayloadTooLarge for a command larger
        than a device accepts, Throttled past the in-flight limit (shared with resource
        calls), DeadlineExceeded after `seconds`, Unavailable if the link closes first, and
        the device's failure as `server.link.commands.failure_error` maps its status. A
        caller that is cancelled cancels the command on the device.
        """
        if command.ByteSize() > MAX_INPUT_BYTES:
            raise errors.PayloadTooLarge(
                f"the command is larger than a device accepts ({MAX_INPUT_BYTES} bytes)"
            )

        def message(call_id: int, deadline_ms: int) -> agent_pb2.ConnectResponse:
            sent = agent_pb2.Command()
            sent.CopyFrom(command)
            sent.call_id = call_id
            sent.deadline_ms = deadline_ms
            return agent_pb2.ConnectResponse(command=sent)

        answer = await self._round_trip(message, seconds)
        if not isinstance(answer, agent_pb2.CommandResult):
            raise errors.BadGateway(WRONG_ANSWER)
        return commands.outcome(answer)

    async def _round_trip(
        self, message_for: Callable[[int, int], agent_pb2.ConnectResponse], seconds: float
    ) -> Answer:
        """Send the message `message_for(call_id, deadline_ms)` builds and wait for the
        device's answer to it: the one path of every call, so that the in-flight limit,
        the deadline and cancelling mean the same for resource calls and commands."""
        if self.closed is not None:
            raise errors.Unavailable("device disconnected")
        if len(self._pending) >= self.max_calls_in_flight:
            raise errors.Throttled(
                f"device {self.key.device_id!r} has {self.max_calls_in_flight} calls in flight",
                RETRY_AFTER_SECONDS,
            )
        call_id = self._last_call_id = next(self._call_ids)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Answer] = loop.create_future()
        self._pending[call_id] = answer
        outgoing = message_for(call_id, max(1, int(seconds * 1000)))
        # The deadline is a timer that fails the answer's future: no task and no second
        # future per call, as asyncio.wait_for would make.
        timer = loop.call_later(seconds, _time_out, answer)
        try:
            self._send(outgoing)
            try:
                return await answer
            except TimeoutError:
                self._cancel_on_device(call_id)
                raise errors.DeadlineExceeded(
                    f"device {self.key.device_id!r} did not answer in time"
                ) from None
            except asyncio.CancelledError:
                self._cancel_on_device(call_id)
                raise
        finally:
            timer.cancel()
            self._pending.pop(call_id, None)
            answer.cancel()  # a no-op once answered

    def deliver(self, result: Answer) -> None:
        """Hand a device's Result or CommandResult to its caller; late ones (a call that
        ended) are dropped.

        InvalidArgument for a Result naming a call never made: no device sends one, and a
        flood of them must not cost the server more than the one message.
        """
        if not 0 < result.call_id <= self._last_call_id:
            raise errors.InvalidArgument(f"no call {result.call_id} was made on this link")
        answer = self._pending.get(result.call_id)
        if answer is not None and not answer.done():
            answer.set_result(result)

    async def outgoing(self) -> AsyncIterator[agent_pb2.ConnectResponse]:
        """The messages to send, until the link closes."""
        while (next_message := await self._outgoing.get()) is not None:
            self.sent(next_message)
            yield next_message

    def close(self, reason: errors.ThingwireError) -> None:
        """Close once: fail every pending call with `reason` now and stop the writer."""
        if self.closed is not None:
            return
        self.closed = without_traceback(reason)
        failure = errors.Unavailable(f"device disconnected: {reason.message}")
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(failure)
        self._outgoing.put_nowait(None)

    def go_away(self, reconnect_after_ms: int, reason: str) -> None:
        """Tell the device when to come back, then close: its calls fail, its stream ends."""
        go_away = agent_pb2.GoAway(reconnect_after_ms=reconnect_after_ms, reason=reason)
        self._send(agent_pb2.ConnectResponse(go_away=go_away))
        self.close(errors.Unavailable(reason))

    def send(self, message: agent_pb2.ConnectResponse) -> None:
        """Queue a message for the device (an upload's answer); dropped once closed."""
        self._send(message)

    def _send(self, message: agent_pb2.ConnectResponse) -> None:
        if self.closed is not None:
            return
        if self._outgoing.qsize() >= MAX_OUTGOING_BACKLOG:
            # Nothing queued will be read: drop it, so that the stream ends now.
            while not self._outgoing.empty():
                self._outgoing.get_nowait()
            self.close(errors.Unavailable(NOT_READING))
            return
        self._outgoing.put_nowait(message)

    def _cancel_on_device(self, call_id: int) -> None:
        self._send(agent_pb2.ConnectResponse(cancel=agent_pb2.Cancel(call_id=call_id)))


def _invoke_message(
    call_id: int, resource: str, value: struct_pb2.Value | None, deadline_ms: int
) -> agent_pb2.ConnectResponse:
    invoke = agent_pb2.Invoke(call_id=call_id, resource=resource, deadline_ms=deadline_ms)
    if value is not None:
        invoke.input.CopyFrom(value)
    return agent_pb2.ConnectResponse(invoke=invoke)


def _time_out(answer: asyncio.Future[Answer]) -> None:
    """A call's deadline came before its Result."""
    if not answer.done():
        answer.set_exception(TimeoutError())


def is_json(value: struct_pb2.Value) -> bool:
    """Whether JSON can carry `value`: no NaN or infinity anywhere in it (a protobuf Value
    can hold them; JSON, and so the gateway's transcoder, cannot)."""
    stack = [value]
    while stack:
        item = stack.pop()
        which = item.WhichOneof("kind")
        if which == "number_value" and not math.isfinite(item.number_value):
            return False
        if which == "struct_value":
            stack.extend(item.struct_value.fields.values())
        elif which == "list_value":
            stack.extend(item.list_value.values)
    return True


def check_input(resource: Resource, value: struct_pb2.Value | None) -> None:
    """InvalidArgument unless `value` is given exactly when the resource takes an input."""
    if resource.kind in TAKES_INPUT and value is None:
        raise errors.InvalidArgument(f"resource {resource.name!r} takes an input value")
    if resource.kind not in TAKES_INPUT and value is not None:
        raise errors.InvalidArgument(f"resource {resource.name!r} takes no input value")


def without_traceback(error: errors.ThingwireError) -> errors.ThingwireError:
    """A copy of `error` with no traceback. A link keeps why it closed, and its stream ends
    with it: an error carrying a traceback of a frame that holds the link would tie the
    two in a reference cycle, which keeps the closed link (its stream's generators, tasks
    and messages) in memory until the collector's next full pass, slow with 10,000 links
    (docs/device-link.md, "Many devices at once")."""
    fresh = type(error).__new__(type(error))
    fresh.args = error.args
    fresh.__dict__.update(error.__dict__)
    return fresh


class LinkClosed(errors.Unavailable):
    """The device ended its stream itself: the stream ends with OK, its calls fail."""


@dataclass(frozen=True)
class LinkLimits:
    """The server's limits for every link (create_server takes them; `thingwire serve`
    reads them from the THINGWIRE_LINK_* settings)."""

    #: Calls one device may have in flight; past it callers get RESOURCE_EXHAUSTED at once.
    max_calls_in_flight: int = 64
    #: On a graceful shutdown each device is told to come back after a random delay within
    #: this many seconds, so a restart does not bring the whole fleet back at once.
    go_away_window_s: float = 5.0
    #: The deadline of a resource call whose caller set none (or a longer one); the device
    #: is told the time left (THINGWIRE_RESOURCE_CALL_TIMEOUT_S, docs/design.md).
    call_timeout_s: float = 10.0
    #: The server PINGs each HTTP/2 connection (a direct device, the gateway) this often and
    #: drops one that leaves a PING unanswered for `keepalive_timeout_s`.
    keepalive_s: float = 10.0
    keepalive_timeout_s: float = 10.0
    #: How often the figures of live links that changed are written to the database.
    stats_interval_s: float = 15.0
    #: How long a new stream may take to send its Hello. Until then it is nobody's, and
    #: without a bound anyone could hold streams open without credentials.
    hello_timeout_s: float = 10.0
    #: Hellos being checked at once (from the Hello's arrival to the Welcome); a Hello past
    #: it is refused at once, RESOURCE_EXHAUSTED, and the device retries with its backoff.
    #: A stream that sends nothing holds no slot.
    max_links_opening: int = 256
    #: Telemetry uploads (docs/device-link.md, "Telemetry uploads"), told in the Welcome:
    #: the largest batch in bytes and in records, and how many batches of one link are
    #: stored at once (past it, UploadFailed BUSY).
    max_upload_bytes: int = 1024 * 1024
    max_upload_records: int = 10_000
    max_uploads_in_flight: int = 4
