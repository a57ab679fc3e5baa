"""Conversion between Envoy's delta xDS protobuf messages and ``sync.messages``.

The only module of the engine that touches protobuf: requests and responses are parsed
here when they arrive and built here when they leave, so the engine and the mirror never
see a protobuf message (STYLE: parse at the boundary). Anything a peer sends that the
protocol does not allow raises ``RemoteProtocolError``.

NACK details: Envoy's ``error_detail`` (a ``google.rpc.Status``) says only that a response
was refused. A Gossamer subscriber that refuses some resources and applies the rest adds
one ``gossamer.sync.v1.RejectedResources`` to ``error_detail.details``; a NACK without it
refuses the whole response (see ``Nack.rejected``).

Not supported (refused as a protocol error, or ignored where harmless): resource
locators and xdstp names (ignored), TTL heartbeats (resources without a body: refused),
aliases (never sent).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from sync.errors import RemoteProtocolError
from sync.messages import Entry, Nack, Payload, Request, Response
from sync.v1 import sync_pb2

DeltaDiscoveryRequest = discovery_pb2.DeltaDiscoveryRequest
DeltaDiscoveryResponse = discovery_pb2.DeltaDiscoveryResponse


def request_from_proto(msg: discovery_pb2.DeltaDiscoveryRequest) -> Request:
    """Parse a request from a subscriber."""
    return Request(
        type_url=msg.type_url,
        response_nonce=msg.response_nonce,
        subscribe=_names(msg.resource_names_subscribe, "resource_names_subscribe"),
        unsubscribe=_names(msg.resource_names_unsubscribe, "resource_names_unsubscribe"),
        initial_versions=dict(msg.initial_resource_versions),
        error=_nack_from_status(msg.error_detail) if msg.HasField("error_detail") else None,
        node_id=msg.node.id,
    )


def request_to_proto(req: Request) -> discovery_pb2.DeltaDiscoveryRequest:
    msg = DeltaDiscoveryRequest(
        type_url=req.type_url,
        response_nonce=req.response_nonce,
        resource_names_subscribe=sorted(req.subscribe),
        resource_names_unsubscribe=sorted(req.unsubscribe),
        initial_resource_versions=dict(req.initial_versions),
    )
    if req.node_id:
        msg.node.CopyFrom(base_pb2.Node(id=req.node_id))
    if req.error is not None:
        msg.error_detail.CopyFrom(_nack_to_status(req.error))
    return msg


def response_from_proto(msg: discovery_pb2.DeltaDiscoveryResponse) -> Response:
    """Parse a response from a publisher."""
    resources: dict[str, Entry] = {}
    for res in msg.resources:
        if not res.name:
            raise RemoteProtocolError("a resource in a response has no name")
        if res.name in resources:
            raise RemoteProtocolError(f"resource {res.name!r} appears twice in one response")
        if not res.HasField("resource"):
            raise RemoteProtocolError(f"resource {res.name!r} has no body (TTL heartbeats "
                                      "are not supported)")
        payload = Payload(res.resource.type_url, res.resource.value)
        resources[res.name] = Entry(version=res.version, payload=payload)
    return Response(type_url=msg.type_url, nonce=msg.nonce, resources=resources,
                    removed=frozenset(msg.removed_resources),
                    system_version=msg.system_version_info)


def response_to_proto(resp: Response) -> discovery_pb2.DeltaDiscoveryResponse:
    """The response as Envoy's message. Its resources are parsed from their serialized
    form (``resource_bytes``, kept on each entry), which costs far less than building a
    ``Resource`` and an ``Any`` per resource in Python."""
    msg = DeltaDiscoveryResponse(type_url=resp.type_url, nonce=resp.nonce,
                                 system_version_info=resp.system_version,
                                 removed_resources=sorted(resp.removed))
    if resp.resources:
        parts: list[bytes] = []
        for name in sorted(resp.resources):
            entry = resp.resources[name]
            parts += (resource_prefix(name, entry), entry.payload.value)
        msg.MergeFromString(b"".join(parts))
    return msg


def resource_prefix(name: str, entry: Entry) -> bytes:
    """What goes before ``entry.payload.value`` in a ``DeltaDiscoveryResponse`` for the
    resource ``name``: the ``resources`` field's tag and length, then the ``Resource``'s
    ``name`` and ``version``, then its ``Any`` up to the value's bytes. Kept on the entry
    (``Entry.wire``) for the next response that carries it."""
    kept = entry.wire
    if kept is not None and kept[0] == name:
        return kept[1]
    payload = entry.payload
    value = len(payload.value)
    any_head = _string(1, payload.type_url.encode()) + b"\x12" + _varint(value)
    head = (_string(3, name.encode()) + _string(1, entry.version.encode())
            + b"\x12" + _varint(len(any_head) + value) + any_head)
    prefix = b"\x12" + _varint(len(head) + value) + head
    object.__setattr__(entry, "wire", (name, prefix))  # a memo, not state: see Entry
    return prefix


def _string(number: int, value: bytes) -> bytes:
    """A length-delimited field (wire type 2) of a field number below 16."""
    return bytes((number << 3 | 2,)) + _varint(len(value)) + value


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _names(values: Iterable[str], what: str) -> frozenset[str]:
    names = frozenset(values)
    if "" in names:
        raise RemoteProtocolError(f"an empty resource name in {what}")
    return names


def _nack_from_status(status: status_pb2.Status) -> Nack:
    rejected: dict[str, str] | None = None
    for detail in status.details:
        if detail.Is(sync_pb2.RejectedResources.DESCRIPTOR):
            names = sync_pb2.RejectedResources()
            try:
                detail.Unpack(names)
            except DecodeError:
                raise RemoteProtocolError("a NACK's RejectedResources does not parse") from None
            rejected = {r.name: r.message for r in names.rejections} or None
    return Nack(message=status.message, code=status.code, rejected=rejected)


def _nack_to_status(nack: Nack) -> status_pb2.Status:
    status = status_pb2.Status(code=nack.code, message=nack.message)
    if nack.rejected is not None:
        detail = sync_pb2.RejectedResources(rejections=[
            sync_pb2.RejectedResources.Rejection(name=n, message=m)
            for n, m in sorted(nack.rejected.items())])
        status.details.add().Pack(detail)
    return status
