"""The pure pieces the e2e tests stand on, without root: if these were wrong, the e2e
tests could pass for the wrong reason.

- ``topology``: every namespace and address distinct, names checked at construction;
- ``launch``: the Dataplane each workload registers is valid for the real model, and
  each sidecar dials its own zone's CP;
- ``wire``: a synthetic capture is reassembled in order (retransmissions once, a
  connection without its SYN left out), TLS records parse and plaintext does not;
- ``probes.upstream_counts`` reads Envoy's ``/clusters`` JSON (zero values left out);
- the demo app's answer parses back; the upstream DNS answers A, empty AAAA, NXDOMAIN.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import yaml
from dnslib import QTYPE, RCODE, DNSRecord

from deploy.local import launch, probes
from deploy.local.app import answer, parse_answer
from deploy.local.topology import Topology, Workload, demo
from deploy.local.upstream_dns import EXAMPLE_ORG, RECORDS, FixedResolver
from gossamer.model.registry import parse_document
from tests.e2e import wire

BIG = Topology(zones=("east", "west", "north"), prefix="gsmq-", workloads=tuple(
    Workload(f"w{i}", "svc", zone) for i, zone in enumerate(["east", "west", "north"] * 4)))


def test_every_namespace_and_address_is_distinct_and_prefixed() -> None:
    spaces = BIG.namespaces()
    assert len(set(spaces)) == len(spaces) == 2 + 3 * 3 + 12
    assert all(ns.startswith("gsmq-") for ns in spaces)
    addresses = [BIG.cp_ip(z) for z in BIG.zones] + [BIG.ingress_ip(z) for z in BIG.zones]
    addresses += [BIG.workload_ip(w.name) for w in BIG.workloads]
    assert len(set(addresses)) == len(addresses)
    for w in BIG.workloads:
        assert BIG.workload_ip(w.name) in [str(h) for h in BIG.subnet(w.zone).hosts()]
    assert len({BIG.router_wan_ip(z) for z in BIG.zones}) == 3


@pytest.mark.parametrize("make", [
    lambda: Topology(zones=("east", "east"), workloads=()),
    lambda: Topology(zones=("East",), workloads=()),
    lambda: Topology(zones=("global",), workloads=()),
    lambda: Topology(zones=("east",), workloads=(Workload("a", "s", "west"),)),
    lambda: Topology(zones=("east",), workloads=(Workload("a", "s", "east"),) * 2),
    lambda: Topology(zones=("east",), workloads=(), prefix="gsm"),
    lambda: Workload("bad_name", "s", "east"),
])
def test_bad_topologies_are_refused_at_construction(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_each_workload_registers_a_valid_dataplane_with_its_own_zone(tmp_path: Path) -> None:
    t, layout, options = demo(), launch.Layout(tmp_path), launch.Options()
    for w in t.workloads:
        resource = parse_document(yaml.safe_load(launch.dataplane_yaml(t, w)))
        assert resource.name == w.name
        assert "gossamer.io/vip-outbounds" not in resource.labels  # on by default
        _, sidecar = launch.workload_commands(t, layout, options, w)
        argv = list(sidecar.argv)
        assert argv[argv.index("--cp") + 1] == t.cp_url(w.zone)
        assert argv[argv.index("--cp-ca") + 1] == str(layout.sidecar_ca(w.name))
        assert "--transparent" in argv
        assert sidecar.ns == t.workload_ns(w.name)


def _frame(src: str, sport: int, dst: str, dport: int, seq: int, flags: int,
           payload: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp


def _pcap(frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for f in frames:
        out += struct.pack("<IIII", 0, 0, len(f), len(f)) + f
    return out


def _record(kind: int, body: bytes) -> bytes:
    return struct.pack("!BBBH", kind, 3, 3, len(body)) + body


def test_a_capture_is_reassembled_in_order_and_read_as_tls_records() -> None:
    hello, data = _record(22, b"\x01hello backend.default.mesh"), _record(23, b"\x99" * 40)
    a, b = ("10.2.0.11", 40000), ("10.1.0.3", 10001)
    frames = [
        _frame(*a, *b, 1000, 0x02),
        _frame(*a, *b, 1001 + len(hello), 0x18, data),  # out of order
        _frame(*a, *b, 1001, 0x18, hello),
        _frame(*a, *b, 1001, 0x18, hello),  # retransmitted
        _frame("10.2.0.12", 5, *b, 7, 0x18, b"GET / HTTP/1.1\r\n"),  # no SYN seen: left out
        _frame(*a, "10.9.9.9", 80, 1, 0x02),  # another port
    ]
    streams = wire.tcp_streams(_pcap(frames), port=10001)
    assert streams == {(*a, *b): hello + data}
    assert wire.tls_records(hello + data) == [22, 23]
    assert wire.tls_records(hello + data[:10]) == [22, 23]  # a cut last record is fine
    with pytest.raises(AssertionError, match="not a TLS record"):
        wire.tls_records(hello + b"GET / HTTP/1.1\r\nhost: backend.mesh\r\n\r\n")


def test_upstream_counts_read_envoys_clusters_json() -> None:
    clusters = """{"cluster_statuses": [
      {"name": "gossamer_xds", "host_statuses": [{"address": {"socket_address":
        {"address": "10.1.0.2", "port_value": 5678}}, "stats": [{"name": "cx_total",
        "value": "1"}]}]},
      {"name": "backend", "host_statuses": [{"address": {"socket_address":
        {"address": "10.1.0.3", "port_value": 10001}}, "stats": [
        {"name": "cx_total", "value": "1"}, {"name": "rq_total", "value": "2"},
        {"name": "rq_error"}, {"type": "GAUGE", "name": "cx_active", "value": "1"}]}]}]}"""
    counts = probes.upstream_counts(clusters)
    assert counts == {("backend", "10.1.0.3:10001"): (3, 1)}
    assert probes.moved({("backend", "10.1.0.3:10001"): (2, 1)}, counts) == [
        ("backend", "10.1.0.3:10001")]
    assert probes.moved(counts, counts) == []
    assert probes.moved(counts, counts, cluster="backend") == [("backend", "10.1.0.3:10001")]


def test_the_apps_answer_names_its_zone() -> None:
    assert parse_answer(answer("backend", "backend-1", "east")) == ("backend", "backend-1",
                                                                     "east")
    assert parse_answer("upstream connect error") is None
    assert parse_answer("") is None


@pytest.mark.parametrize(("name", "qtype", "rcode", "answers"), [
    ("example.org", "A", RCODE.NOERROR, [EXAMPLE_ORG]),
    ("EXAMPLE.org.", "A", RCODE.NOERROR, [EXAMPLE_ORG]),
    ("example.org", "AAAA", RCODE.NOERROR, []),
    ("nosuch.example.org", "A", RCODE.NXDOMAIN, []),
])
def test_the_upstream_dns_answers(name: str, qtype: str, rcode: int, answers: list[str]
                                  ) -> None:
    reply = FixedResolver(RECORDS).resolve(DNSRecord.question(name, qtype), None)
    assert reply.header.rcode == rcode
    assert [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A] == answers
