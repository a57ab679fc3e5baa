"""The resolver's pure core answering mesh names: bytes in, commands out. The table (names
normalised, bounds refused), authoritative VIP answers, case, ids and flags, AAAA and other
types, NXDOMAIN and the SOA, a configurable domain, class and transfer refusals.

No sockets and no event loop: queries are built with dnslib, fed to ``Resolver.handle``
and the answers parsed back with dnslib, as a client would read them.
"""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, A, DNSHeader, DNSQuestion, DNSRecord

from dns.core import Forward, Resolver, ResolverConfig
from dns.errors import InvalidTable
from dns.table import MAX_ADDRESSES_PER_NAME, DnsTable
from sync.v1 import agent_pb2
from tests.unit.dns_queries import TABLE, TCP, UDP, addresses, ask, opt_of, query


def test_table_normalises_names_and_merges_a_message() -> None:
    message = agent_pb2.DnsTable(
        entries=[
            agent_pb2.DnsTable.Entry(name="Backend.Mesh", ips=["240.0.0.1"], ports=[80]),
            agent_pb2.DnsTable.Entry(name="backend.mesh.", ips=["240.0.0.2", "240.0.0.1"]),
            agent_pb2.DnsTable.Entry(name="v6.mesh", ips=["fd00::1"]),
        ],
        version="42",
    )
    table = DnsTable.from_message(message)
    assert table.version == "42"
    assert set(table.entries) == {"backend.mesh.", "v6.mesh."}
    assert [str(a) for a in table.lookup("BACKEND.mesh") or ()] == ["240.0.0.1", "240.0.0.2"]
    assert table.exists("mesh.") and table.exists("v6.MESH") and not table.exists("x.mesh")
    assert table.lookup("nope.mesh") is None


@pytest.mark.parametrize(
    "mapping",
    [
        {"": ["240.0.0.1"]},
        {"bad name.mesh": ["240.0.0.1"]},
        {"a..mesh": ["240.0.0.1"]},
        {("x" * 64) + ".mesh": ["240.0.0.1"]},
        {".".join(["a" * 60] * 5) + ".mesh": ["240.0.0.1"]},
        {"backend.mesh": ["not-an-ip"]},
        {"backend.mesh": [f"240.0.1.{i}" for i in range(MAX_ADDRESSES_PER_NAME + 1)]},
    ],
    ids=["empty", "space", "empty-label", "long-label", "long-name", "bad-ip", "too-many-ips"],
)
def test_table_refuses_what_breaks_its_bounds(mapping: dict[str, list[str]]) -> None:
    with pytest.raises(InvalidTable):
        DnsTable.from_mapping(mapping)


def test_a_query_returns_the_vips_authoritatively() -> None:
    reply = ask(Resolver(TABLE), query("backend.mesh", qid=77))
    assert reply.header.id == 77 and reply.header.qr == 1 and reply.header.aa == 1
    assert reply.header.rcode == RCODE.NOERROR and reply.header.rd == 1 and reply.header.tc == 0
    assert addresses(reply) == ["240.0.0.1", "240.0.0.2"]
    assert {rr.ttl for rr in reply.rr} == {5}
    assert opt_of(reply) is None  # no OPT asked, none sent


def test_names_match_in_any_case_and_the_question_is_echoed_as_sent() -> None:
    reply = ask(Resolver(TABLE), query("BaCkEnD.MeSh"))
    assert addresses(reply) == ["240.0.0.1", "240.0.0.2"]
    # DNS 0x20: clients that randomise case check the echo byte for byte.
    assert reply.q.qname.label == (b"BaCkEnD", b"MeSh")
    assert reply.rr[0].rname.label == (b"BaCkEnD", b"MeSh")


def test_each_query_gets_its_own_id_flags_and_case_from_the_shared_packed_answer() -> None:
    resolver = Resolver(TABLE)
    first = ask(resolver, query("backend.mesh", qid=1))
    assert first.header.rd == 1 and first.header.cd == 0
    second_query = DNSRecord(DNSHeader(id=2, rd=0, cd=1), q=DNSQuestion("BACKEND.MESH"))
    second = ask(resolver, bytes(second_query.pack()))
    assert second.header.id == 2 and second.header.rd == 0 and second.header.cd == 1
    assert second.header.aa == 1 and second.header.ra == 1
    assert second.q.qname.label == (b"BACKEND", b"MESH")
    assert {rr.rname.label for rr in second.rr} == {(b"BACKEND", b"MESH")}
    assert addresses(second) == addresses(first)


def test_aaaa_without_ipv6_vips_is_an_empty_noerror_with_the_soa() -> None:
    reply = ask(Resolver(TABLE), query("backend.mesh", "AAAA"))
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == []
    assert [rr.rtype for rr in reply.auth] == [QTYPE.SOA]


def test_ipv6_vips_answer_aaaa_and_stay_out_of_a() -> None:
    table = DnsTable.from_mapping({"dual.mesh": ["240.0.0.9", "fd00::9"]})
    resolver = Resolver(table)
    assert addresses(ask(resolver, query("dual.mesh", "AAAA"))) == ["fd00::9"]
    assert addresses(ask(resolver, query("dual.mesh", "A"))) == ["240.0.0.9"]
    assert sorted(addresses(ask(resolver, query("dual.mesh", "ANY")))) == ["240.0.0.9", "fd00::9"]


@pytest.mark.parametrize("qtype", ["MX", "TXT", "SRV", "CNAME", "HTTPS"])
def test_other_types_for_a_known_name_are_empty_noerror(qtype: str) -> None:
    reply = ask(Resolver(TABLE), query("backend.mesh", qtype))
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == [] and reply.header.aa == 1


def test_unknown_mesh_name_is_nxdomain_with_the_soa_for_negative_caching() -> None:
    reply = ask(Resolver(TABLE, config=ResolverConfig(negative_ttl=3)), query("nope.mesh"))
    assert reply.header.rcode == RCODE.NXDOMAIN and reply.rr == [] and reply.header.aa == 1
    (soa,) = reply.auth
    assert soa.rtype == QTYPE.SOA and str(soa.rname) == "mesh."
    assert soa.ttl == 3 and soa.rdata.times[-1] == 3


def test_ancestors_of_table_names_exist_and_the_apex_has_an_soa() -> None:
    resolver = Resolver(TABLE)
    for name in ("svc.mesh", "default.svc.mesh", "mesh"):
        reply = ask(resolver, query(name))
        assert reply.header.rcode == RCODE.NOERROR and reply.rr == [], name
    soa = ask(resolver, query("mesh", "SOA"))
    assert [rr.rtype for rr in soa.rr] == [QTYPE.SOA]
    assert ask(resolver, query("web.default.svc.mesh")).rr[0].rdata == A("240.0.0.3")


def test_the_domain_is_configurable() -> None:
    table = DnsTable.from_mapping({"backend.internal": ["240.0.0.1"]})
    resolver = Resolver(table, config=ResolverConfig(domain="Internal."))
    assert addresses(ask(resolver, query("backend.internal"))) == ["240.0.0.1"]
    assert ask(resolver, query("other.internal")).header.rcode == RCODE.NXDOMAIN
    assert isinstance(resolver.handle(query("backend.mesh"), UDP), Forward)
    # A name that merely ends in the same letters is not in the domain.
    assert isinstance(resolver.handle(query("backend.notinternal"), UDP), Forward)


def test_a_new_table_is_used_at_once_and_moves_the_soa_serial() -> None:
    resolver = Resolver(TABLE)
    before = ask(resolver, query("new.mesh"))
    assert before.header.rcode == RCODE.NXDOMAIN
    resolver.update_table(DnsTable.from_mapping({"new.mesh": ["240.0.0.8"]}))
    assert addresses(ask(resolver, query("new.mesh"))) == ["240.0.0.8"]
    after = ask(resolver, query("backend.mesh"))
    assert after.header.rcode == RCODE.NXDOMAIN
    assert after.auth[0].rdata.times[0] == before.auth[0].rdata.times[0] + 1


def test_mesh_names_outside_class_in_are_refused_and_zone_transfers_not_implemented() -> None:
    resolver = Resolver(TABLE)
    assert ask(resolver, query("backend.mesh", qclass="CH")).header.rcode == RCODE.REFUSED
    assert ask(resolver, query("mesh", "AXFR"), TCP).header.rcode == RCODE.NOTIMP
    assert addresses(ask(resolver, query("backend.mesh", qclass="*"))) == [
        "240.0.0.1",
        "240.0.0.2",
    ]

