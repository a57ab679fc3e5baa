"""The error hierarchy of Gossamer's kernel.

Each error knows whose fault it is (``caller_fault``), whether retrying can help
(``retryable``) and how it maps onto the wire: ``http_status`` for the HTTP API and
``grpc_status``, the name of a ``grpc.StatusCode`` (this package imports no gRPC), for
the gRPC servers (the zone CP's agent API and ADS, the zone sync), which read it at
their edge. The API turns any ``GossamerError`` into a JSON problem document; the CLI
prints it as one line. Foreign exceptions (pydantic, asyncpg, sqlite) are translated
into these at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a document: ``path`` is dotted with [i] indexes."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class GossamerError(Exception):
    """Base of every error Gossamer raises on purpose."""

    http_status = 500
    grpc_status = "INTERNAL"
    title = "internal error"
    caller_fault = False
    retryable = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidResource(GossamerError):
    """A document that does not describe a valid resource."""

    http_status = 400
    grpc_status = "INVALID_ARGUMENT"
    title = "invalid resource"
    caller_fault = True

    def __init__(self, detail: str, field_errors: list[FieldError] | None = None) -> None:
        self.field_errors = list(field_errors or [])
        if self.field_errors:
            detail = detail + ": " + "; ".join(str(e) for e in self.field_errors)
        super().__init__(detail)


class NotFound(GossamerError):
    http_status = 404
    grpc_status = "NOT_FOUND"
    title = "not found"
    caller_fault = True


class AlreadyExists(GossamerError):
    http_status = 409
    grpc_status = "ALREADY_EXISTS"
    title = "already exists"
    caller_fault = True


class Conflict(GossamerError):
    """A write based on a stale version, or one that another owner forbids."""

    http_status = 409
    grpc_status = "ABORTED"
    title = "conflict"
    caller_fault = True


class Unauthorized(GossamerError):
    http_status = 401
    grpc_status = "UNAUTHENTICATED"
    title = "unauthorized"
    caller_fault = True


class Forbidden(GossamerError):
    http_status = 403
    grpc_status = "PERMISSION_DENIED"
    title = "forbidden"
    caller_fault = True


class FailedPrecondition(GossamerError):
    """A request that comes too early for the state it needs (a CSR before its sidecar
    registered): the caller must do the missing step first."""

    http_status = 409
    grpc_status = "FAILED_PRECONDITION"
    title = "failed precondition"
    caller_fault = True


class ResourceExhausted(GossamerError):
    """A request beyond a quota the caller holds (a token's ``max_dataplanes``)."""

    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"
    title = "resource exhausted"
    caller_fault = True


class Unavailable(GossamerError):
    """Something this server needs is not there yet (the zone token keys before the
    global sent them): the same request can succeed later."""

    http_status = 503
    grpc_status = "UNAVAILABLE"
    title = "unavailable"
    retryable = True


class RevisionCompacted(GossamerError):
    """A watch asked to resume from a revision the store no longer keeps events for.

    The watcher must list everything again and resume from the store's current revision.
    """

    http_status = 410
    grpc_status = "OUT_OF_RANGE"
    title = "revision compacted"
    caller_fault = True


class StoreUnavailable(GossamerError):
    http_status = 503
    grpc_status = "UNAVAILABLE"
    title = "store unavailable"
    retryable = True


class StoreConfigError(GossamerError):
    """A store URL or store option that names no store Gossamer can open."""

    http_status = 400
    grpc_status = "INVALID_ARGUMENT"
    title = "invalid store configuration"
    caller_fault = True
