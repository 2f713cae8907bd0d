"""The AutoPi Local API's rpcs (`thingwire.local.v1.LocalService`), served by the agent.

The device's gateway transcodes the documented REST paths onto these rpcs
(docs/device-side.md). The servicer is thin: it checks the unit id in the path and the
token, and hands the work to the command registry, the APN settings and the log reader.
Every refusal is a `LocalError` with its HTTP status; `_failing` ends the call with the
status and the Local API's `{"error": "..."}` body, which the gateway copies as it is.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from google.api import httpbody_pb2
from thingwire.local.v1 import local_pb2, local_pb2_grpc
from thingwire.options.v1 import options_pb2

from device_agent.commands import CommandError, CommandRunner, bodies
from device_agent.local_identity import LocalIdentity
from device_agent.local_logs import BadLogName, LogNotFound, read_log
from device_agent.local_throttle import LoginThrottle
from gateway.config import HOST_HEADER
from server.rest_errors import error_metadata

__all__ = ["UNIT_MISMATCH", "ApnStore", "LocalError", "LocalServicer"]

UNIT_MISMATCH = "unit_id does not match the id configured on this device"
DISPLAY = "Local device"
#: The most a request body may hold here; Envoy refuses larger ones first (413).
MAX_BODY_BYTES = 1024 * 1024

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    404: grpc.StatusCode.NOT_FOUND,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

Reply = TypeVar("Reply")


class ApnStore(Protocol):
    """The APN settings kept on the device (device_agent.commands)."""

    def get(self) -> dict[str, Any]:
        """The settings: apn, user, pass, pin, mtu."""
        ...

    def put(self, body: Any) -> dict[str, Any]:
        """Replace them with ``body`` (checked; CommandError naming what is wrong)."""
        ...


class LocalError(Exception):
    """A refusal with the HTTP status the Local API answers it with (and, for 429, the
    seconds to wait, sent as `Retry-After`)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def _failing(
    method: Callable[..., Awaitable[Reply]],
) -> Callable[..., Awaitable[Reply]]:
    """Run the rpc; a LocalError or CommandError ends it with its status and body."""

    @functools.wraps(method)
    async def guarded(
        self: LocalServicer, request: Any, context: grpc.aio.ServicerContext
    ) -> Reply:
        try:
            self.check_origin(context)
            if method.__name__ != "Login":
                self.check_token(context)
            return await method(self, request, context)
        except (LocalError, CommandError) as error:
            status = error.status
            message = str(error)
            retry_after = getattr(error, "retry_after", None)
        code = _CODES.get(status, grpc.StatusCode.INVALID_ARGUMENT)
        trailers = error_metadata(options_pb2.API_FAMILY_LOCAL, code, message, status)
        if retry_after is not None:
            trailers = (*trailers, ("retry-after", str(retry_after)))
        await context.abort(code, message, trailers)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    return guarded


def json_body(value: Any) -> httpbody_pb2.HttpBody:
    """A JSON answer; any JSON value (a command's output is a string, a bool, an object).
    LocalError 502 for a value JSON cannot carry: the registry's bug, not the caller's."""
    try:
        data = bodies.encode_result(value)
    except (TypeError, ValueError) as error:
        raise LocalError(502, f"the command's result is not JSON: {error}") from None
    return httpbody_pb2.HttpBody(content_type="application/json", data=data)


def _bounded(raw: httpbody_pb2.HttpBody) -> bytes:
    """The request body's bytes; LocalError 400 past MAX_BODY_BYTES (Envoy's 413 comes
    first), 415 for a body not sent as JSON: a browser sends text/plain or a form across
    sites without asking first, never application/json."""
    if len(raw.data) > MAX_BODY_BYTES:
        raise LocalError(400, f"the body is larger than {MAX_BODY_BYTES} bytes")
    media_type = raw.content_type.split(";", 1)[0].strip().lower()
    if raw.data and media_type != "application/json":
        raise LocalError(415, "the body must be sent as Content-Type: application/json")
    return raw.data


def _parsed(raw: httpbody_pb2.HttpBody) -> Any:
    """The request body as strict JSON; CommandError 400 for anything else."""
    return bodies.strict_json(_bounded(raw))


class LocalServicer(local_pb2_grpc.LocalServiceServicer):
    """The Local API of one device."""

    def __init__(
        self,
        identity: LocalIdentity,
        *,
        log_dir: Path,
        commands: CommandRunner,
        apn: ApnStore,
        password: str | None = None,
        timezone: str = "UTC",
        hostnames: frozenset[str] = frozenset(),
    ) -> None:
        self._identity = identity
        self._log_dir = log_dir
        self._commands = commands
        self._apn = apn
        self._password = password or None
        self._timezone = timezone
        self._throttle = LoginThrottle()
        self._hostnames = frozenset(name.lower() for name in hostnames) | {"localhost"}

    def check_token(self, context: grpc.aio.ServicerContext) -> None:
        """With a password set, every rpc but Login needs `Authorization: Bearer <token>`."""
        if self._password is None:
            return
        scheme, _, token = _metadata(context).get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or not token:
            raise LocalError(401, "authentication required: log in and send the token")
        if not self._identity.token_matches(token.strip()):
            raise LocalError(401, "the token is not valid on this device")

    @property
    def identity(self) -> LocalIdentity:
        """The device's unit id and token, as this API answers and checks them."""
        return self._identity

    def check_origin(self, context: grpc.aio.ServicerContext) -> None:
        """Refuse what a web page elsewhere could make a browser send (docs/device-side.md,
        "Access"): a Host that is not an address or a name of this device (DNS rebinding),
        and an Origin other than the Host itself (a cross-site request). Calls that did not
        come through the device gateway carry no Host header and are not browsers'."""
        metadata = _metadata(context)
        host = metadata.get(HOST_HEADER)
        if host is None:
            return
        if not _is_address(_hostname(host)) and _hostname(host) not in self._hostnames:
            raise LocalError(
                403, f"the Host {host!r} is not an address or a configured name of this device"
            )
        origin = metadata.get("origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc.lower() != host.lower():
            raise LocalError(403, "cross-origin requests are refused")

    def _check_unit(self, unit_id: str, context: grpc.aio.ServicerContext) -> None:
        """The unit id of the request's path (never a query parameter's) is this device's,
        in any spelling of the same UUID."""
        if not _same_uuid(_path_unit_id(context) or unit_id, self._identity.unit_id):
            raise LocalError(400, UNIT_MISMATCH)

    def _device(self) -> local_pb2.LocalDevice:
        return local_pb2.LocalDevice(unit_id=self._identity.unit_id, display=DISPLAY)

    @_failing
    async def Login(
        self, request: local_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> local_pb2.LoginResponse:
        if self._password is not None:
            address = _client_address(context)
            wait = self._throttle.retry_after(address)
            if wait is not None:
                raise LocalError(429, f"too many failed logins; retry in {wait} s", wait)
            body = _parsed(request.raw) if request.raw.data.strip() else {}
            password = body.get("password") if isinstance(body, dict) else None
            if not isinstance(password, str) or not _same_text(password, self._password):
                self._throttle.failed(address)
                raise LocalError(401, "wrong password")
            self._throttle.succeeded(address)
        user = local_pb2.LocalUser(
            pk=0,
            username="local user",
            has_devices=True,
            is_local=True,
            devices=[self._device()],
            timezone=self._timezone,
        )
        return local_pb2.LoginResponse(token=self._identity.token, user=user)

    @_failing
    async def GetUnit(
        self, request: local_pb2.GetUnitRequest, context: grpc.aio.ServicerContext
    ) -> local_pb2.GetUnitResponse:
        return local_pb2.GetUnitResponse(unit_id=self._identity.unit_id)

    @_failing
    async def ListDevices(
        self, request: local_pb2.ListDevicesRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        return json_body([{"unit_id": self._identity.unit_id, "display": DISPLAY}])

    @_failing
    async def DownloadLog(
        self, request: local_pb2.DownloadLogRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        try:
            data = await asyncio.to_thread(read_log, self._log_dir, request.file)
        except BadLogName as error:
            raise LocalError(400, str(error)) from None
        except LogNotFound as error:
            raise LocalError(404, str(error)) from None
        await context.send_initial_metadata(
            (("content-disposition", content_disposition(request.file.rsplit("/", 1)[-1])),)
        )
        return httpbody_pb2.HttpBody(content_type="text/plain; charset=utf-8", data=data)

    @_failing
    async def Execute(
        self, request: local_pb2.ExecuteRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        self._check_unit(request.unit_id, context)
        command, args, kwargs = bodies.parse_execute(_bounded(request.raw))
        return json_body(await self._commands.execute(command, args, kwargs))

    @_failing
    async def ExecuteRaw(
        self, request: local_pb2.ExecuteRawRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        self._check_unit(request.unit_id, context)
        line = bodies.parse_execute_raw(_bounded(request.raw))
        return json_body(await self._commands.execute_raw(line))

    @_failing
    async def GetApnSettings(
        self, request: local_pb2.GetApnSettingsRequest, context: grpc.aio.ServicerContext
    ) -> local_pb2.ApnSettings:
        self._check_unit(request.unit_id, context)
        # The store reads and writes its file with fsync: off the loop.
        return local_pb2.ApnSettings(**await asyncio.to_thread(self._apn.get))

    @_failing
    async def UpdateApnSettings(
        self, request: local_pb2.UpdateApnSettingsRequest, context: grpc.aio.ServicerContext
    ) -> local_pb2.ApnSettings:
        self._check_unit(request.unit_id, context)
        body = _parsed(request.raw)
        return local_pb2.ApnSettings(**await asyncio.to_thread(self._apn.put, body))


def content_disposition(filename: str) -> str:
    """`attachment` with the name as RFC 6266 writes it: an ASCII fallback (quotes and
    backslashes replaced) and, for any other name, `filename*` in UTF-8."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    header = f'attachment; filename="{fallback}"'
    if fallback != filename:
        header += f"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"
    return header


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's metadata as text (the last value of a key wins)."""
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        found[key] = value.decode("latin-1") if isinstance(value, bytes) else value
    return found


def _hostname(host: str) -> str:
    """`example:9000` → `example`, `[::1]:9000` → `::1`, lower-cased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _path_unit_id(context: grpc.aio.ServicerContext) -> str | None:
    """The unit id in the REST path the gateway matched (`/dongle/<unit_id>/…`), None for a
    gRPC call: the transcoder would let `?unit_id=` replace the path's."""
    path = _metadata(context).get("x-envoy-original-path")
    if path is None:
        return None
    segments = path.split("?", 1)[0].split("/")
    if len(segments) > 2 and segments[1] == "dongle":
        return urllib.parse.unquote(segments[2])
    return None


def _same_uuid(given: str, ours: str) -> bool:
    try:
        return uuid.UUID(given) == uuid.UUID(ours)
    except ValueError:
        return False


def _client_address(context: grpc.aio.ServicerContext) -> str:
    """The caller's address: `x-forwarded-for`, which the device gateway sets to its peer
    (nothing else can reach the service's socket), else the gRPC peer."""
    forwarded = _metadata(context).get("x-forwarded-for")
    if forwarded is not None:
        return forwarded.split(",")[0].strip()
    return context.peer() or "unknown"


def _same_text(given: str, expected: str) -> bool:
    """Constant-time comparison of two texts."""
    return hmac.compare_digest(given.encode(), expected.encode())
