"""The Envoy admin relay's shared terms: which pages, how much, how long, which errors.

``gossamer inspect dataplane NAME --config-dump|--stats|--clusters`` reaches a sidecar's
Envoy admin (127.0.0.1 on the sidecar's host) without opening anything inbound anywhere:

    CLI --HTTP, admin token--> global --ZoneSync.Relay (the zone dialled it)--> zone CP
        --agent Session (the agent dialled it)--> agent --HTTP 127.0.0.1--> Envoy admin

At a zone CP the first hop is left out. Every hop reuses a stream its peer opened; each
hop bounds what it forwards (``MAX_BODY``, cut with ``truncated`` set, never an error)
and how long it waits, a hop further from the caller waiting less, so the error the
caller reads names the hop that failed (``RelayTimeout`` from the zone, not a bare
timeout at the global). Only the pages of ``PAGES`` exist: the peer names a page, never a
path, and the agent checks it again (every input from a peer is hostile).

The errors travel between processes as a code (``RelayError.code``) and a detail; a code
this version does not know becomes a plain ``RelayError`` with the peer's detail.
This module is pure: no I/O, no protobuf (``sync.relay_wire`` converts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gossamer.errors import GossamerError
from gossamer.model.kind_index import check_name  # pydantic-free: the agent loads this

# The page names the API and the CLI use, and the admin path each one means.
PAGES: dict[str, str] = {
    "config_dump": "/config_dump",
    "stats": "/stats",
    "clusters": "/clusters",
    "certs": "/certs",  # the certificates Envoy serves with, and when they expire
}
MAX_BODY = 8 << 20  # what any hop forwards of one page; the rest is cut (``truncated``)
CHUNK = 1 << 20  # the agent's pieces: the zone CP's agent API reads 4 MiB messages
# Each hop waits less than the one before it, so the nearest failure is the one named.
ENVOY_TIMEOUT = 5.0  # the agent, for Envoy's admin
ZONE_TIMEOUT = 10.0  # the zone CP, for the agent's last piece
GLOBAL_TIMEOUT = 15.0  # the global, for the zone's reply


class RelayError(GossamerError):
    """Why a relayed page is missing; ``code`` is its name on the wire."""

    code = "relay-failed"
    http_status = 502
    grpc_status = "UNAVAILABLE"
    title = "inspect relay failed"


class BadRequest(RelayError):
    code = "bad-request"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"
    title = "invalid inspect request"
    caller_fault = True


class ZoneOffline(RelayError):
    code = "zone-offline"
    http_status = 503
    title = "zone offline"
    retryable = True


class ZoneTooOld(RelayError):
    code = "zone-too-old"
    http_status = 501
    grpc_status = "UNIMPLEMENTED"
    title = "zone control plane too old"


class NotConnected(RelayError):
    code = "not-connected"
    http_status = 404
    grpc_status = "NOT_FOUND"
    title = "dataplane not connected"
    caller_fault = True


class AgentTooOld(RelayError):
    code = "agent-too-old"
    http_status = 501
    grpc_status = "UNIMPLEMENTED"
    title = "agent too old"


class RelayTimeout(RelayError):
    code = "timeout"
    http_status = 504
    grpc_status = "DEADLINE_EXCEEDED"
    title = "inspect relay timed out"
    retryable = True


class EnvoyUnreachable(RelayError):
    code = "envoy-unreachable"
    title = "Envoy's admin did not answer"
    retryable = True


class Busy(RelayError):
    code = "busy"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"
    title = "the agent is answering another inspect"
    retryable = True


ERRORS: dict[str, type[RelayError]] = {cls.code: cls for cls in (
    RelayError, BadRequest, ZoneOffline, ZoneTooOld, NotConnected, AgentTooOld, RelayTimeout,
    EnvoyUnreachable, Busy)}


def error_from(code: str, detail: str) -> RelayError:
    """The error a peer named; an unknown code keeps the peer's words."""
    cls = ERRORS.get(code, RelayError)
    return cls(detail[:1000] or f"the peer failed the relay ({code[:40]!r})")


def check_target(mesh: str, name: str, page: str, zone: str | None = None) -> None:
    """``BadRequest`` naming the first bad part of what is asked for (from the API, or
    from the global over the relay)."""
    for value, what in ((zone, "zone"), (mesh, "mesh"), (name, "dataplane")):
        if value is not None and (errors := check_name(value, what)):
            raise BadRequest(f"{errors[0]} (got {str(value)[:80]!r})")
    admin_path(page)


def page_json(zone: str, mesh: str, name: str, page: str, answer: AdminPage) -> dict[str, Any]:
    """What the API answers: the page as text, Envoy's status, and the note if cut."""
    return {"zone": zone, "mesh": mesh, "dataplane": name, "page": page,
            "httpStatus": answer.http_status, "truncated": answer.truncated,
            "note": answer.note() or None,
            "body": answer.body.decode("utf-8", "replace")}


def admin_path(page: str) -> str:
    """The admin path of ``page``; ``BadRequest`` for anything else."""
    try:
        return PAGES[page]
    except KeyError:
        raise BadRequest(f"unknown Envoy admin page {page[:40]!r}; one of "
                      f"{', '.join(sorted(PAGES))}") from None


@dataclass(frozen=True)
class AdminPage:
    """One Envoy admin page as relayed: Envoy's status, the body (at most ``MAX_BODY``)
    and whether some hop cut it there."""

    http_status: int
    body: bytes
    truncated: bool = False

    @staticmethod
    def capped(http_status: int, body: bytes, truncated: bool = False) -> AdminPage:
        """``body`` cut to ``MAX_BODY`` (``truncated`` if it was, or already was)."""
        cut = len(body) > MAX_BODY
        return AdminPage(http_status, body[:MAX_BODY], truncated or cut)

    def note(self) -> str:
        """The line that says the page is incomplete ("" when it is not)."""
        if not self.truncated:
            return ""
        return (f"Envoy's answer was cut at {MAX_BODY >> 20} MiB: this is its beginning "
                "only (use --stats or --clusters for a smaller page)")


class Assembly:
    """An agent's reply pieces put back together, bounded: what a hostile agent sends
    past ``MAX_BODY`` is dropped and the page marked ``truncated``."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._cut = False

    def add(self, chunk: bytes) -> None:
        room = MAX_BODY - self._size
        if len(chunk) > room:
            self._cut = True
            chunk = chunk[:max(room, 0)]
        self._parts.append(chunk)
        self._size += len(chunk)

    def finish(self, http_status: int, truncated: bool) -> AdminPage:
        return AdminPage(http_status, b"".join(self._parts), truncated or self._cut)


def chunks(body: bytes) -> list[bytes]:
    """``body`` in ``CHUNK``-sized pieces (one empty piece for an empty body)."""
    return [body[i:i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
