"""The Envoy admin relay's protobuf edge (``sync.relay`` says what the relay is).

Page names become ``EnvoyAdminPage`` values and back (an unknown value is a ``BadRequest``,
never a path); a zone's ``RelayReply`` becomes an ``AdminPage`` (capped again: the global
trusts no zone with its memory) or the ``RelayError`` the zone named.
"""

from __future__ import annotations

from sync.relay import AdminPage, BadRequest, RelayError, error_from
from sync.v1 import agent_pb2, sync_pb2

PAGE_VALUES: dict[str, int] = {
    "config_dump": agent_pb2.ENVOY_ADMIN_PAGE_CONFIG_DUMP,
    "stats": agent_pb2.ENVOY_ADMIN_PAGE_STATS,
    "clusters": agent_pb2.ENVOY_ADMIN_PAGE_CLUSTERS,
    "certs": agent_pb2.ENVOY_ADMIN_PAGE_CERTS,
}
PAGE_NAMES: dict[int, str] = {value: name for name, value in PAGE_VALUES.items()}


def page_value(page: str) -> int:
    try:
        return PAGE_VALUES[page]
    except KeyError:
        raise BadRequest(f"unknown Envoy admin page {page[:40]!r}") from None


def page_name(value: int) -> str:
    """The page a peer asked for; ``BadRequest`` for a value this version does not know."""
    try:
        return PAGE_NAMES[value]
    except KeyError:
        raise BadRequest(f"unknown Envoy admin page number {value}") from None


def reply(request_id: int, outcome: AdminPage | RelayError) -> sync_pb2.RelayReply:
    """The zone's answer to one ``RelayRequest``."""
    if isinstance(outcome, RelayError):
        return sync_pb2.RelayReply(request_id=request_id, error_code=outcome.code,
                                   error=outcome.detail)
    return sync_pb2.RelayReply(request_id=request_id, body=outcome.body,
                               http_status=outcome.http_status,
                               truncated=outcome.truncated)


def outcome(message: sync_pb2.RelayReply) -> AdminPage:
    """The page a zone relayed, or raise the error it named."""
    if message.error_code:
        raise error_from(message.error_code, message.error)
    return AdminPage.capped(message.http_status, message.body, message.truncated)
