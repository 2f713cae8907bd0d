"""The agent: declares a device's resources, keeps its link open and answers calls and
the commands the cloud relays (a `CommandRunner`, given at construction).

    agent = Agent(lambda: grpc.aio.insecure_channel("cloud:8080"),
                  user="ada", device="boiler", credentials="s3cret")

    @agent.output("temperature")
    def temperature() -> float:
        return 21.5

    await agent.serve()   # runs until cancelled; reconnects by itself

The channel factory is injected (as httpx injects its transport), so tests and other
transports (TLS, a Unix socket) need no change here. docs/device-link.md has the protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc

from device_agent import command_calls
from device_agent.backoff import Backoff
from device_agent.command_calls import NoCommands
from device_agent.commands import CommandRunner
from device_agent.outbox import Outbox
from device_agent.resources import Handler, Kind, ResourceHandler
from device_agent.uploader import Uploader

log = logging.getLogger(__name__)

#: Opens a new channel to the server; called once per connection attempt.
ChannelFactory = Callable[[], grpc.aio.Channel]
#: Statuses after which reconnecting cannot help: the agent stops with LinkRefused.
FINAL = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INVALID_ARGUMENT,
        # Another process connected as this device and replaced this link.
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


class LinkRefused(Exception):
    """The server refused the link for good (bad credentials, bad declarations, replaced)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class Agent:
    """One device's agent. Declare resources with the decorators, then `await serve()`."""

    def __init__(
        self,
        channel_factory: ChannelFactory,
        *,
        user: str,
        device: str,
        credentials: str = "",
        device_token: str = "",
        backoff: Backoff | None = None,
        outbox: Outbox | None = None,
        uploader: Uploader | None = None,
        commands: CommandRunner | None = None,
    ) -> None:
        """One of ``credentials`` (the device's) and ``device_token`` (a link token from
        `thingwire device token`) opens the link; ValueError unless exactly one is given.

        With an ``outbox`` the agent uploads its records over every link (with
        ``uploader``'s settings, or the defaults). ``commands`` runs the salt-style
        commands the cloud relays (docs/device-link.md, "Commands"); without one, every
        command is refused with "commands are not available on this agent"."""
        if bool(credentials) == bool(device_token):
            raise ValueError(
                "an agent opens its link with credentials or a link token: one of them"
            )
        self._channel_factory = channel_factory
        self._user = user
        self._device = device
        self._credentials = credentials
        self._device_token = device_token
        self._backoff = backoff or Backoff()
        self._resources: dict[str, ResourceHandler] = {}
        self.outbox = outbox
        if uploader is None and outbox is not None:
            uploader = Uploader(outbox)
        self.uploader = uploader
        #: Runs the commands the server sends; may be replaced before `serve`.
        self.commands: CommandRunner = commands if commands is not None else NoCommands()
        #: Coroutines that run while `serve` does (record sources feeding the outbox).
        self._alongside: list[Callable[[], Awaitable[None]]] = []
        #: The link secret of the last Welcome. Kept in memory only: after a restart of the
        #: agent, its first open uses the credentials again.
        self.link_secret: str | None = None
        #: Set while a link is open (after its Welcome).
        self.connected = asyncio.Event()
        #: Links opened so far.
        self.connections = 0
        #: Told the unit id each Welcome carries (the Local API keeps it: docs/device-side.md).
        self.on_unit_id: Callable[[str], None] | None = None
        self._go_away_s: float | None = None

    @property
    def resources(self) -> tuple[str, ...]:
        """The names of the declared resources, in the order they were declared."""
        return tuple(self._resources)

    # -- declaring resources -------------------------------------------------------------

    def output(self, name: str, *, description: str = "", example: Any = None) -> Any:
        """Declare a resource that gives a value: ``handler() -> value``."""
        return self._declare(name, Kind.RESOURCE_KIND_OUTPUT, description, example)

    def input(self, name: str, *, description: str = "", example: Any = None) -> Any:
        """Declare a resource that takes a value: ``handler(value) -> None``."""
        return self._declare(name, Kind.RESOURCE_KIND_INPUT, description, example)

    def io(self, name: str, *, description: str = "", example: Any = None) -> Any:
        """Declare a resource that takes and gives a value: ``handler(value) -> value``."""
        return self._declare(name, Kind.RESOURCE_KIND_INPUT_OUTPUT, description, example)

    def run(self, name: str, *, description: str = "") -> Any:
        """Declare a command without parameters: ``handler() -> None``."""
        return self._declare(name, Kind.RESOURCE_KIND_NONE, description, None)

    def _declare(
        self, name: str, kind: agent_pb2.ResourceKind, description: str, example: Any
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            if name in self._resources:
                raise ValueError(f"resource {name!r} is declared twice")
            self._resources[name] = ResourceHandler(name, kind, handler, description, example)
            return handler

        return register

    def alongside(self, start: Callable[[], Awaitable[None]]) -> None:
        """Run ``start()`` while `serve` runs (a record source); cancelled when it ends."""
        self._alongside.append(start)

    # -- running ---------------------------------------------------------------------

    async def serve(self) -> None:
        """Keep the link open until cancelled, reconnecting with backoff.

        Raises LinkRefused when the server refuses for good (see FINAL).
        """
        tasks = [asyncio.ensure_future(start()) for start in self._alongside]
        try:
            await self._serve()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self) -> None:
        attempt = 0
        while True:
            welcomed = False
            try:
                welcomed = await self._session()
            except grpc.aio.AioRpcError as error:
                welcomed = self.connected.is_set()
                code = error.code()
                if code == grpc.StatusCode.UNAUTHENTICATED and self.link_secret is not None:
                    log.info("link secret refused; opening with the credentials")
                    self.link_secret = None
                    continue
                if code in FINAL:
                    raise LinkRefused(code, error.details() or "") from None
                log.info("link lost (%s: %s)", code.name, error.details())
            finally:
                self.connected.clear()
            if welcomed:
                attempt = 0
            delay = self._go_away_s if self._go_away_s is not None else self._backoff.delay(attempt)
            self._go_away_s = None
            attempt += 1
            log.info("reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _session(self) -> bool:
        """One link, from Hello until the stream ends; True if it was welcomed."""
        to_send: asyncio.Queue[agent_pb2.ConnectRequest | None] = asyncio.Queue()
        to_send.put_nowait(agent_pb2.ConnectRequest(hello=self._hello()))
        calls: dict[int, asyncio.Task[None]] = {}
        uploading: asyncio.Task[None] | None = None

        async def requests() -> AsyncIterator[agent_pb2.ConnectRequest]:
            while (message := await to_send.get()) is not None:
                yield message

        async with self._channel_factory() as channel:
            stream = agent_pb2_grpc.AgentServiceStub(channel).Connect(requests())
            try:
                async for message in stream:
                    kind = message.WhichOneof("kind")
                    if kind == "welcome":
                        self._welcome(message.welcome)
                        if self.uploader is not None and uploading is None:
                            uploading = asyncio.create_task(
                                self.uploader.run(message.welcome, to_send.put_nowait)
                            )
                    elif kind in ("upload_ack", "upload_failed"):
                        if self.uploader is not None:
                            self.uploader.answer(message)
                    elif kind == "invoke":
                        call_id = message.invoke.call_id
                        task = asyncio.create_task(self._answer(message.invoke, to_send))
                        calls[call_id] = task
                        task.add_done_callback(_forget(calls, call_id))
                    elif kind == "command":
                        call_id = message.command.call_id
                        task = asyncio.create_task(self._command(message.command, to_send))
                        calls[call_id] = task
                        task.add_done_callback(_forget(calls, call_id))
                    elif kind == "cancel":
                        cancelled = calls.pop(message.cancel.call_id, None)
                        if cancelled is not None:
                            cancelled.cancel()
                    elif kind == "go_away":
                        self._go_away_s = message.go_away.reconnect_after_ms / 1000
                        log.info(
                            "server going away (%s): back in %.1f s",
                            message.go_away.reason,
                            self._go_away_s,
                        )
            finally:
                for task in list(calls.values()):
                    task.cancel()
                if uploading is not None:
                    uploading.cancel()  # what it sent and was not answered stays in the outbox
                    (ended,) = await asyncio.gather(uploading, return_exceptions=True)
                    if not isinstance(ended, asyncio.CancelledError):
                        log.error("uploads ended: %r", ended)
                to_send.put_nowait(None)  # ends requests(), so nothing waits on the queue
                stream.cancel()
        return self.connected.is_set()

    def _hello(self) -> agent_pb2.Hello:
        hello = agent_pb2.Hello(
            user=self._user,
            device=self._device,
            resources=[r.declaration() for r in self._resources.values()],
        )
        if self.link_secret is not None:
            hello.link_secret = self.link_secret
        elif self._device_token:
            hello.device_token = self._device_token  # the Welcome then carries no link secret
        else:
            hello.credentials = self._credentials
        return hello

    def _welcome(self, welcome: agent_pb2.Welcome) -> None:
        if welcome.link_secret:
            self.link_secret = welcome.link_secret
        if welcome.unit_id and self.on_unit_id is not None:
            self.on_unit_id(welcome.unit_id)
        self.connections += 1
        self.connected.set()
        log.info(
            "link open as %s/%s (%d calls in flight at most)",
            self._user,
            self._device,
            welcome.max_calls_in_flight,
        )

    async def _answer(
        self, invoke: agent_pb2.Invoke, to_send: asyncio.Queue[agent_pb2.ConnectRequest | None]
    ) -> None:
        """Run one call and queue its Result; a cancelled or late call answers nothing."""
        result = agent_pb2.Result(call_id=invoke.call_id)
        timer = asyncio.timeout(invoke.deadline_ms / 1000 if invoke.deadline_ms else None)
        try:
            resource = self._resources.get(invoke.resource)
            if resource is None:
                raise LookupError(f"no resource {invoke.resource!r} on this device")
            async with timer:
                output = await resource.call(invoke.input if invoke.HasField("input") else None)
            if output is not None:
                result.output.CopyFrom(output)
        except TimeoutError:
            if timer.expired():
                return  # the server gave up on this call already
            result.error = "TimeoutError"
        except Exception as error:  # a handler's failure is the caller's answer, not ours
            log.warning("resource %r failed: %r", invoke.resource, error)
            result.error = str(error) or type(error).__name__
        to_send.put_nowait(agent_pb2.ConnectRequest(result=result))

    async def _command(
        self, command: agent_pb2.Command, to_send: asyncio.Queue[agent_pb2.ConnectRequest | None]
    ) -> None:
        """Run one command and queue its CommandResult; a cancelled or late one answers
        nothing (the server gave up on it already)."""
        timer = asyncio.timeout(command.deadline_ms / 1000 if command.deadline_ms else None)
        try:
            async with timer:
                result = await command_calls.answer(self.commands, command)
        except TimeoutError:
            if timer.expired():
                return
            result = command_calls.failure(command.call_id, 504, "the command timed out")
        to_send.put_nowait(agent_pb2.ConnectRequest(command_result=result))


def _forget(calls: dict[int, asyncio.Task[None]], call_id: int) -> Callable[[object], None]:
    """A done-callback that drops a finished call from the session's table."""

    def forget(_: object) -> None:
        calls.pop(call_id, None)

    return forget
