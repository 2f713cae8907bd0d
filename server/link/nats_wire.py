"""What replicas say to each other over NATS: the subjects, and how calls, answers, errors
and figures are written (docs/architecture.md, "Scale-out: what NATS carries").

One subject per device, `thingwire.device.<user pk>.<device id>`, is subscribed by the
replica that holds the device's stream; an `Op` header says what a message asks. Device ids
are `[a-zA-Z0-9_]{1,25}` and user ids integers, so both are safe subject tokens; a caller
may name any id, though, and the client writes a subject into the protocol line as it is
(a space, a dot, a wildcard or a line break would change what is asked, or of whom), so
no subject is made for an id no device can have (`routable`): such a device is offline
everywhere. Values
travel as serialized protobuf (`google.protobuf.Value`), never re-encoded as JSON, so what
the device answers is what the caller gets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import quote, unquote

import orjson
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from thingwire.agent.v1 import agent_pb2

from server import errors
from server.link.link import DeviceKey, LinkFigures, Resource
from server.storage.devices import DEVICE_ID_RE

PREFIX = "thingwire"
#: Every replica subscribes this one wildcard: links opening and closing anywhere.
PRESENCE_ALL = f"{PREFIX}.presence.>"

# The `Op` header of a message on a device's subject.
OP_INVOKE = "invoke"
#: A salt-style command: the payload is the serialized agent.v1.Command, the answer's
#: payload the device's JSON result as it wrote it.
OP_COMMAND = "command"
OP_RESOURCES = "resources"
OP_FIGURES = "figures"
OP_CANCEL = "cancel"
OP_WATCH = "watch"
OP_CLOSE = "close"

#: The `Status` header of an answer: "OK" or the name of a domain error class.
OK = "OK"
#: Errors an answer may carry, by class name; anything else arrives as Unavailable.
_ERRORS: Mapping[str, type[errors.ThingwireError]] = {
    cls.__name__: cls
    for cls in (
        errors.InvalidArgument,
        errors.NotFound,
        errors.BadGateway,
        errors.FailedPrecondition,
        errors.Unavailable,
        errors.DeadlineExceeded,
        errors.PermissionDenied,
        errors.PayloadTooLarge,
    )
}
#: A call or an answer larger than one NATS message (nats-server's ``max_payload``, 1 MiB
#: unless configured): it cannot cross between replicas, and the caller hears so at once.
TOO_LARGE = "the {what} ({size} bytes) is larger than replicas can pass on ({limit} bytes)"


def routable(key: DeviceKey) -> bool:
    """Whether `key` could name a device, and so a subject of its own (see the module doc)."""
    return (
        isinstance(key.user_id, int)
        and not isinstance(key.user_id, bool)
        and DEVICE_ID_RE.fullmatch(key.device_id) is not None
    )


def _subject(kind: str, key: DeviceKey) -> str:
    if not routable(key):
        raise ValueError(f"no subject for device {key.device_id!r}")
    return f"{PREFIX}.{kind}.{key.user_id}.{key.device_id}"


def device_subject(key: DeviceKey) -> str:
    """The subject of one device, answered by the replica that holds its stream."""
    return _subject("device", key)


def presence_subject(key: DeviceKey) -> str:
    """Where a replica announces that a device's link opened or closed there."""
    return _subject("presence", key)


def stats_subject(key: DeviceKey) -> str:
    """Where the holder says a watched device's figures changed (no payload)."""
    return _subject("stats", key)


def key_of(subject: str) -> DeviceKey | None:
    """The device a presence, stats or device subject names (None for a foreign one)."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != PREFIX or not parts[2].isdigit():
        return None
    key = DeviceKey(int(parts[2]), parts[3])
    return key if routable(key) else None


def encode_name(name: str) -> str:
    """A resource name as a header value: percent-encoded, since the client trims a value
    and turns its line breaks into spaces (`"echo "` must not arrive as `"echo"`)."""
    return quote(name, safe="")


def decode_name(value: str) -> str:
    """The resource name `encode_name` wrote."""
    return unquote(value)


# -- answers ---------------------------------------------------------------------------------


def error_headers(error: errors.ThingwireError) -> dict[str, str]:
    """The headers of an answer that carries `error` (Throttled keeps its Retry-After)."""
    headers = {"Status": type(error).__name__, "Message": error.message}
    if isinstance(error, errors.Throttled):
        headers["Retry-After"] = str(error.retry_after)
    return headers


def raise_if_error(headers: Mapping[str, str] | None) -> None:
    """Raise the domain error an answer carries, as the holder raised it."""
    status = (headers or {}).get("Status", "")
    if status == OK:
        return
    message = (headers or {}).get("Message", "the replica holding the device failed")
    if status == "Throttled":
        raise errors.Throttled(message, int((headers or {}).get("Retry-After", "1")))
    raise _ERRORS.get(status, errors.Unavailable)(message)


def encode_value(value: struct_pb2.Value | None) -> tuple[bytes, str]:
    """A value as a payload and its `Value` header ("1": present, "0": none)."""
    if value is None:
        return b"", "0"
    return value.SerializeToString(), "1"


def decode_value(data: bytes, present: str | None) -> struct_pb2.Value | None:
    if present != "1":
        return None
    value = struct_pb2.Value()
    value.ParseFromString(data)
    return value


def encode_command(command: agent_pb2.Command) -> bytes:
    """A command as a payload: its message, call id and deadline unset (headers carry those)."""
    return command.SerializeToString()


def decode_command(data: bytes) -> agent_pb2.Command:
    """The command `encode_command` wrote; InvalidArgument for bytes that are not one."""
    command = agent_pb2.Command()
    try:
        command.ParseFromString(data)
    except DecodeError:
        raise errors.InvalidArgument("the relayed command is not a Command message") from None
    return command


def encode_resources(resources: Sequence[Resource]) -> bytes:
    """Declared resources as the Hello declares them (the same message, the same bounds)."""
    hello = agent_pb2.Hello()
    for resource in resources:
        item = hello.resources.add(
            name=resource.name, kind=resource.kind, description=resource.description
        )
        if resource.example is not None:
            item.example.CopyFrom(resource.example)
    return hello.SerializeToString()


def decode_resources(data: bytes) -> list[Resource]:
    hello = agent_pb2.Hello()
    hello.ParseFromString(data)
    return [
        Resource(
            item.name,
            item.kind,
            item.description,
            item.example if item.HasField("example") else None,
        )
        for item in hello.resources
    ]


def encode_figures(figures: LinkFigures) -> bytes:
    connected = figures.connected_time
    return orjson.dumps(
        {
            "connected": figures.connected,
            "connected_us": int(connected.timestamp() * 1_000_000) if connected else None,
            "ip_address": figures.ip_address,
            "rx_bytes": figures.rx_bytes,
            "tx_bytes": figures.tx_bytes,
        }
    )


def decode_figures(data: bytes) -> LinkFigures:
    raw = orjson.loads(data)
    micros = raw["connected_us"]
    return LinkFigures(
        connected=bool(raw["connected"]),
        connected_time=None if micros is None else datetime.fromtimestamp(micros / 1e6, UTC),
        ip_address=str(raw["ip_address"]),
        rx_bytes=int(raw["rx_bytes"]),
        tx_bytes=int(raw["tx_bytes"]),
    )


def encode_presence(replica: str, connected: bool, since_us: int) -> bytes:
    """A link opened (or closed) on `replica`; `since_us` is when it opened, which decides
    which of two links of one device is the newer."""
    return orjson.dumps({"replica": replica, "connected": connected, "since_us": since_us})


def decode_presence(data: bytes) -> tuple[str, bool, int]:
    raw = orjson.loads(data)
    return str(raw["replica"]), bool(raw["connected"]), int(raw["since_us"])
