"""The edges of the sync engine: Envoy's delta xDS messages and Gossamer resources.

Real ``xds-protos`` messages, serialized to bytes and parsed back, in both directions.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.errors import InvalidResource
from gossamer.model.base import Meta
from gossamer.model.registry import parse_document
from sync import codec, wire
from sync.messages import Entry, Nack, Payload, Request, Response
from sync.v1 import sync_pb2, sync_pb2_grpc

T = "gossamer.io/MeshTimeout"


def reparse_request(req: Request) -> Request:
    raw = wire.request_to_proto(req).SerializeToString()
    return wire.request_from_proto(discovery_pb2.DeltaDiscoveryRequest.FromString(raw))


def reparse_response(resp: Response) -> Response:
    raw = wire.response_to_proto(resp).SerializeToString()
    return wire.response_from_proto(discovery_pb2.DeltaDiscoveryResponse.FromString(raw))


def test_generated_modules_import_next_to_envoy_protos() -> None:
    service = sync_pb2.DESCRIPTOR.services_by_name["ZoneSync"]
    down, up = service.methods_by_name["GlobalToZone"], service.methods_by_name["ZoneToGlobal"]
    req, resp = discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse
    assert down.input_type is req.DESCRIPTOR and down.output_type is resp.DESCRIPTOR
    assert up.input_type is resp.DESCRIPTOR and up.output_type is req.DESCRIPTOR
    assert sync_pb2.Resource.__module__ == "sync.v1.sync_pb2"
    assert hasattr(sync_pb2_grpc, "ZoneSyncServicer") and hasattr(sync_pb2_grpc, "ZoneSyncStub")


@pytest.mark.parametrize("req", [
    Request(type_url=T),
    Request(type_url=T, initial_versions={"default/a": "v1", "b": "v2"}, node_id="zone-east",
            subscribe=frozenset({"*"})),
    Request(type_url=T, response_nonce="7", subscribe=frozenset({"x"}),
            unsubscribe=frozenset({"y"})),
    Request(type_url=T, response_nonce="8", error=Nack("bad", rejected={"a": "why", "b": "no"})),
    Request(type_url=T, response_nonce="9", error=Nack("all bad", code=13)),
], ids=["initial", "resume", "ack", "nack-named", "nack-whole"])
def test_requests_survive_the_wire(req: Request) -> None:
    assert reparse_request(req) == req


def test_responses_survive_the_wire() -> None:
    resp = Response(type_url=T, nonce="3", system_version="12",
                    resources={"a": Entry("v1", Payload("type.googleapis.com/x.Y", b"\x00\x01")),
                               "b": Entry("v2", Payload("type.googleapis.com/x.Y", b""))},
                    removed=frozenset({"c", "d"}))
    assert reparse_response(resp) == resp


def plain_response(resp: Response) -> discovery_pb2.DeltaDiscoveryResponse:
    """The response built message by message, as ``response_to_proto`` used to."""
    return discovery_pb2.DeltaDiscoveryResponse(
        type_url=resp.type_url, nonce=resp.nonce, system_version_info=resp.system_version,
        removed_resources=sorted(resp.removed),
        resources=[discovery_pb2.Resource(name=n, version=e.version, resource=any_pb2.Any(
            type_url=e.payload.type_url, value=e.payload.value))
            for n, e in sorted(resp.resources.items())])


# Lengths around the varint boundaries (1, 2 and 3 bytes) of every length prefix.
SIZES = st.sampled_from([0, 1, 100, 127, 128, 300, 16_000, 16_383, 16_384, 70_000])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=200), st.tuples(
    st.text(min_size=1, max_size=40), st.text(max_size=150), SIZES, st.binary(max_size=8)),
    max_size=5), st.frozensets(st.text(min_size=1, max_size=10), max_size=3))
def test_responses_from_framed_entries_are_the_plain_messages_byte_for_byte(
        specs: dict[str, tuple[str, str, int, bytes]], removed: frozenset[str]) -> None:
    resources = {name: Entry(version, Payload(type_url, tail * size if tail else b"x" * size))
                 for name, (version, type_url, size, tail) in specs.items()}
    resp = Response(type_url=T, nonce="5", system_version="2", resources=resources,
                    removed=removed - resources.keys())
    expected = plain_response(resp).SerializeToString(deterministic=True)
    assert wire.response_to_proto(resp).SerializeToString(deterministic=True) == expected
    # Again, from the entries' kept framing; and one entry under another name.
    assert wire.response_to_proto(resp).SerializeToString(deterministic=True) == expected
    for name, entry in resources.items():
        other = Response(type_url=T, nonce="6", resources={name + "-2": entry})
        assert (wire.response_to_proto(other).SerializeToString(deterministic=True)
                == plain_response(other).SerializeToString(deterministic=True))


def test_the_framing_kept_on_an_entry_is_not_part_of_its_state() -> None:
    e = Entry("v1", Payload("type.googleapis.com/x.Y", b"body"))
    wire.response_to_proto(Response(type_url=T, nonce="1", resources={"a": e}))
    assert e.wire is not None and e.wire[0] == "a"
    assert e == Entry("v1", Payload("type.googleapis.com/x.Y", b"body"))
    assert hash(e) == hash(Entry("v1", Payload("type.googleapis.com/x.Y", b"body")))


def test_an_envoy_request_parses() -> None:
    """What Envoy sends: a node, the type, no names (wildcard); a NACK has no details."""
    first = discovery_pb2.DeltaDiscoveryRequest(
        node=base_pb2.Node(id="sidecar-1", cluster="backend"),
        type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster")
    req = wire.request_from_proto(first)
    assert req.node_id == "sidecar-1" and not req.subscribe and not req.response_nonce
    nack = discovery_pb2.DeltaDiscoveryRequest(
        type_url=first.type_url, response_nonce="4",
        error_detail=status_pb2.Status(code=13, message="Proto constraint validation failed"))
    err = wire.request_from_proto(nack).error
    assert err is not None and err.rejected is None and err.code == 13


def test_named_rejections_travel_as_a_status_detail() -> None:
    msg = wire.request_to_proto(Request(type_url=T, response_nonce="1",
                                        error=Nack("x", rejected={"a": "bad spec"})))
    (detail,) = msg.error_detail.details
    names = sync_pb2.RejectedResources()
    assert detail.Unpack(names)
    assert [(r.name, r.message) for r in names.rejections] == [("a", "bad spec")]


@pytest.mark.parametrize("resources", [
    [discovery_pb2.Resource(version="1", resource=any_pb2.Any())],
    [discovery_pb2.Resource(name="a", version="1")],
    [discovery_pb2.Resource(name="a", version="1", resource=any_pb2.Any())] * 2,
    [discovery_pb2.Resource(name="a", resource=any_pb2.Any())],
], ids=["no-name", "no-body", "twice", "no-version"])
def test_malformed_responses_are_the_peers_fault(resources: list[discovery_pb2.Resource]) -> None:
    msg = discovery_pb2.DeltaDiscoveryResponse(type_url=T, nonce="1", resources=resources)
    with pytest.raises(wire.RemoteProtocolError):
        wire.response_from_proto(msg)


def test_a_request_without_a_type_is_the_peers_fault() -> None:
    with pytest.raises(wire.RemoteProtocolError):
        wire.request_from_proto(discovery_pb2.DeltaDiscoveryRequest(response_nonce="1"))


# -- Gossamer resources as entries -------------------------------------------------------

TIMEOUT = {"type": "MeshTimeout", "name": "t", "mesh": "payments", "labels": {"team": "a"},
           "spec": {"rules": [{"default": {"idleTimeout": "1s"}}]}}
MESH = {"type": "Mesh", "name": "payments",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}


@pytest.mark.parametrize("doc", [TIMEOUT, MESH], ids=["spec", "inline-spec"])
def test_resources_round_trip_through_entries(doc: dict[str, object]) -> None:
    stamp = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    res = parse_document(doc).with_meta(Meta(version=4, creation_time=stamp,
                                             modification_time=stamp))
    entry = codec.encode(res)
    back = codec.decode(reparse_response(Response(T, "1", {"k": entry})).resources["k"].payload)
    assert back == res
    assert codec.encode(back) == entry  # same content, same version


def test_versions_follow_content() -> None:
    res = parse_document(TIMEOUT)
    changed = parse_document({**TIMEOUT, "labels": {"team": "b"}})
    assert codec.encode(res).version == codec.encode(parse_document(TIMEOUT)).version
    assert codec.encode(res).version != codec.encode(changed).version


def test_validate_entry_refuses_bad_or_misfiled_resources() -> None:
    res = parse_document(TIMEOUT)
    entry = codec.encode(res)
    codec.validate_entry(codec.kind_type_url("MeshTimeout"), "payments/t", entry)
    with pytest.raises(InvalidResource):
        codec.validate_entry(codec.kind_type_url("MeshTimeout"), "payments/other", entry)
    with pytest.raises(InvalidResource):
        codec.validate_entry(codec.kind_type_url("Mesh"), "payments/t", entry)
    with pytest.raises(InvalidResource):
        codec.decode(Payload(codec.RESOURCE_TYPE_URL, b"\xff\xff"))
    broken = sync_pb2.Resource(type="MeshTimeout", name="t", mesh="m", spec_json='{"rules": 1}')
    with pytest.raises(InvalidResource):
        codec.decode(Payload(codec.RESOURCE_TYPE_URL, broken.SerializeToString()))
