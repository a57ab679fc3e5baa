"""The error hierarchy of Gossamer's kernel.

Each error knows whose fault it is (``caller_fault``), whether retrying can help
(``retryable``) and how it maps onto the wire (``http_status``). The API turns any
``GossamerError`` into a JSON problem document; the CLI prints it as one line. Foreign
exceptions (pydantic, asyncpg, sqlite) are translated into these at the boundary.
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
    title = "internal error"
    caller_fault = False
    retryable = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidResource(GossamerError):
    """A document that does not describe a valid resource."""

    http_status = 400
    title = "invalid resource"
    caller_fault = True

    def __init__(self, detail: str, field_errors: list[FieldError] | None = None) -> None:
        self.field_errors = list(field_errors or [])
        if self.field_errors:
            detail = detail + ": " + "; ".join(str(e) for e in self.field_errors)
        super().__init__(detail)


class NotFound(GossamerError):
    http_status = 404
    title = "not found"
    caller_fault = True


class AlreadyExists(GossamerError):
    http_status = 409
    title = "already exists"
    caller_fault = True


class Conflict(GossamerError):
    """A write based on a stale version, or one that another owner forbids."""

    http_status = 409
    title = "conflict"
    caller_fault = True


class Unauthorized(GossamerError):
    http_status = 401
    title = "unauthorized"
    caller_fault = True


class Forbidden(GossamerError):
    http_status = 403
    title = "forbidden"
    caller_fault = True


class RevisionCompacted(GossamerError):
    """A watch asked to resume from a revision the store no longer keeps events for.

    The watcher must list everything again and resume from the store's current revision.
    """

    http_status = 410
    title = "revision compacted"
    caller_fault = True


class StoreUnavailable(GossamerError):
    http_status = 503
    title = "store unavailable"
    retryable = True


class StoreConfigError(GossamerError):
    """A store URL or store option that names no store Gossamer can open."""

    http_status = 400
    title = "invalid store configuration"
    caller_fault = True
