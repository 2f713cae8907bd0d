"""The thingwire domain error tree.

Storage and business logic raise these and never touch gRPC or HTTP. One interceptor maps
them to gRPC status codes; Envoy then turns those into the HTTP status noted on each class.

    ThingwireError
     ├── InvalidArgument      -> INVALID_ARGUMENT     -> 400
     ├── Unauthenticated      -> UNAUTHENTICATED      -> 401
     ├── PermissionDenied     -> PERMISSION_DENIED    -> 403
     ├── NotFound             -> NOT_FOUND            -> 404
     ├── AlreadyExists        -> ALREADY_EXISTS       -> 409
     ├── FailedPrecondition   -> FAILED_PRECONDITION  -> 400
     ├── Throttled            -> RESOURCE_EXHAUSTED   -> 429
     ├── PayloadTooLarge      -> RESOURCE_EXHAUSTED   -> 413 (its own REST status)
     ├── Unavailable          -> UNAVAILABLE          -> 503
     │    └── BadGateway      -> UNAVAILABLE          -> 502 (its own REST status)
     └── DeadlineExceeded     -> DEADLINE_EXCEEDED    -> 504
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "BadGateway",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ThingwireError",
    "Throttled",
    "Unauthenticated",
    "Unavailable",
]


class ThingwireError(Exception):
    """Base of every domain error; ``message`` is safe to show to the caller."""

    #: The REST status when it is not the one Envoy's table gives the gRPC code.
    http_status: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidArgument(ThingwireError):
    """The request is malformed or a value breaks a rule (HTTP 400)."""


class Unauthenticated(ThingwireError):
    """Missing, unknown, expired or revoked credentials (HTTP 401)."""


class PermissionDenied(ThingwireError):
    """The caller is known but may not do this (HTTP 403)."""


class NotFound(ThingwireError):
    """The resource does not exist, or the caller may not see it (AIP-193) (HTTP 404)."""


class AlreadyExists(ThingwireError):
    """Creating the resource would duplicate a unique name or id (HTTP 409)."""


class FailedPrecondition(ThingwireError):
    """The system is not in the state the operation requires (HTTP 400)."""


class Throttled(ThingwireError):
    """Too many attempts; retry after ``retry_after`` seconds (HTTP 429, ``Retry-After``)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"Throttled({self.message!r}, retry_after={self.retry_after})"


class PayloadTooLarge(ThingwireError):
    """A body larger than the server accepts, found only once it is read, such as a gzip
    body that inflates past the batch limit (HTTP 413, RESOURCE_EXHAUSTED over gRPC)."""

    http_status = 413


class Unavailable(ThingwireError):
    """A dependency (device link, database) is unreachable right now; retryable (HTTP 503)."""


class BadGateway(Unavailable):
    """What the server relayed failed in a way its end did not foresee: a device's command
    that crashed, an answer that is not what the protocol promises (HTTP 502)."""

    http_status = 502


class DeadlineExceeded(ThingwireError):
    """The work did not finish in time, e.g. a device did not answer (HTTP 504)."""
