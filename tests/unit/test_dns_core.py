"""The resolver's pure core, table, cache, codec and framing: bytes in, commands out.

No sockets and no event loop: queries are built with dnslib, fed to ``Resolver.handle``
and the answers parsed back with dnslib, as a client would read them.
"""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pycares
import pytest
from aiodns import error as ares
from dnslib import EDNS0, QTYPE, RCODE, RR, SOA, A, DNSHeader, DNSQuestion, DNSRecord
from dnslib.buffer import Buffer

from dns.cache import AnswerCache
from dns.core import Answer, Drop, Forward, Resolver, ResolverConfig
from dns.errors import NOERROR, NXDOMAIN, SERVFAIL, InvalidTable, RemoteProtocolError, UpstreamError
from dns.framing import FrameDecoder, encode_frame
from dns.message import Question, Reply, Transport
from dns.table import MAX_ADDRESSES_PER_NAME, DnsTable
from dns.upstream import _translate, parse_resolv_conf, reply_from_result
from sync.v1 import agent_pb2

UDP, TCP = Transport.UDP, Transport.TCP
TABLE = DnsTable.from_mapping(
    {"backend.mesh": ["240.0.0.1", "240.0.0.2"], "web.default.svc.mesh": ["240.0.0.3"]},
    version="7",
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def query(
    name: str,
    qtype: str = "A",
    *,
    qid: int = 4242,
    edns: int | None = None,
    do: bool = False,
    version: int = 0,
    qclass: str = "IN",
) -> bytes:
    record = DNSRecord.question(name, qtype, qclass)
    record.header.id = qid
    if edns is not None:
        record.add_ar(EDNS0(udp_len=edns, flags="do" if do else "", version=version))
    return bytes(record.pack())


def answer_of(command: object) -> DNSRecord:
    assert isinstance(command, Answer), command
    return DNSRecord.parse(command.data)


def ask(resolver: Resolver, data: bytes, transport: Transport = UDP) -> DNSRecord:
    return answer_of(resolver.handle(data, transport))


def addresses(record: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in record.rr]


def opt_of(record: DNSRecord) -> RR | None:
    opts = [rr for rr in record.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) <= 1
    return opts[0] if opts else None


# --- the table ------------------------------------------------------------------------


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


# --- .mesh answers --------------------------------------------------------------------


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


# --- EDNS0 and truncation -------------------------------------------------------------


def test_edns_is_echoed_with_our_payload_size_and_the_do_bit() -> None:
    reply = ask(Resolver(TABLE), query("backend.mesh", edns=4096, do=True))
    opt = opt_of(reply)
    assert opt is not None and opt.edns_len == 1232 and opt.edns_do == 1 and opt.edns_ver == 0
    plain = opt_of(ask(Resolver(TABLE), query("backend.mesh", edns=4096)))
    assert plain is not None and plain.edns_do == 0


def test_an_unknown_edns_version_is_badvers() -> None:
    reply = ask(Resolver(TABLE), query("backend.mesh", edns=1232, version=1))
    opt = opt_of(reply)
    assert opt is not None
    assert (opt.edns_rcode << 4) | reply.header.rcode == 16  # BADVERS
    assert reply.rr == []


def _big_table() -> DnsTable:
    ips = [f"240.0.1.{i}" for i in range(MAX_ADDRESSES_PER_NAME)]
    return DnsTable.from_mapping({"big.mesh": ips})


def test_a_udp_answer_over_512_bytes_without_edns_is_truncated_to_its_question() -> None:
    command = Resolver(_big_table()).handle(query("big.mesh"), UDP)
    assert isinstance(command, Answer) and command.truncated and len(command.data) <= 512
    reply = DNSRecord.parse(command.data)
    assert reply.header.tc == 1 and reply.rr == [] and str(reply.q.qname) == "big.mesh."
    assert reply.header.rcode == RCODE.NOERROR


@pytest.mark.parametrize(
    ("transport", "edns", "truncated"),
    [(UDP, None, True), (UDP, 100, True), (UDP, 600, False), (TCP, None, False)],
    ids=["udp-512", "udp-below-512-means-512", "udp-edns-600", "tcp"],
)
def test_the_size_bound_follows_transport_and_edns(
    transport: Transport, edns: int | None, truncated: bool
) -> None:
    command = Resolver(_big_table()).handle(query("big.mesh", edns=edns), transport)
    assert isinstance(command, Answer) and command.truncated is truncated
    reply = DNSRecord.parse(command.data)
    assert len(reply.rr) == (0 if truncated else MAX_ADDRESSES_PER_NAME)
    assert (opt_of(reply) is not None) is (edns is not None)


def test_a_large_edns_size_is_capped_at_what_we_advertise() -> None:
    resolver = Resolver(TABLE)
    sent = query("many.example.org", edns=65000)
    forward = resolver.handle(sent, UDP)
    assert isinstance(forward, Forward)
    records = tuple(
        RR("many.example.org", QTYPE.A, ttl=60, rdata=A(f"10.0.{i}.1")) for i in range(100)
    )
    over_udp = resolver.complete(forward, Reply(NOERROR, answer=records))
    assert over_udp.truncated and len(over_udp.data) <= 1232
    again = resolver.handle(query("many.example.org"), TCP)  # now from the cache
    assert isinstance(again, Answer) and not again.truncated
    assert len(DNSRecord.parse(again.data).rr) == 100


# --- malformed and unsupported queries ------------------------------------------------


def header_bytes(
    qid: int = 99, flags: int = 0x0100, qd: int = 1, an: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, 0, ar)


QNAME = b"\x07backend\x04mesh\x00"


@pytest.mark.parametrize(
    ("data", "rcode"),
    [
        (header_bytes(qd=0), RCODE.FORMERR),
        (header_bytes(qd=2) + QNAME + b"\x00\x01\x00\x01" + QNAME + b"\x00\x01\x00\x01", 1),
        (header_bytes() + QNAME[:5], RCODE.FORMERR),
        (header_bytes() + QNAME, RCODE.FORMERR),  # no qtype/qclass
        (header_bytes() + b"\x50" + b"a" * 80 + b"\x00\x00\x01\x00\x01", RCODE.FORMERR),
        (header_bytes() + b"\xc0\x0c\x00\x01\x00\x01", RCODE.FORMERR),  # pointer to itself
        (header_bytes(an=1) + QNAME + b"\x00\x01\x00\x01", RCODE.FORMERR),  # missing answer
        (
            header_bytes(ar=2)
            + QNAME
            + b"\x00\x01\x00\x01"
            + (b"\x00\x00\x29\x04\xd0" + bytes(6)) * 2,
            1,
        ),
        (
            header_bytes(ar=1)
            + QNAME
            + b"\x00\x01\x00\x01"
            + b"\x01x\x00\x00\x29\x04\xd0"
            + bytes(6),
            1,
        ),
        (header_bytes(flags=0x1100) + QNAME + b"\x00\x01\x00\x01", RCODE.NOTIMP),  # STATUS
        (header_bytes(flags=0x2900) + QNAME + b"\x00\x01\x00\x01", RCODE.NOTIMP),  # UPDATE
    ],
    ids=[
        "no-question",
        "two-questions",
        "cut-name",
        "cut-question",
        "label-over-63",
        "self-pointer",
        "missing-answer",
        "two-opts",
        "opt-not-root",
        "opcode-status",
        "opcode-update",
    ],
)
def test_malformed_and_unsupported_queries_get_an_error_answer(data: bytes, rcode: int) -> None:
    command = Resolver(TABLE).handle(data, UDP)
    assert isinstance(command, Answer) and command.rcode == rcode
    reply = DNSRecord.parse(command.data)
    assert reply.header.id == 99 and reply.header.qr == 1 and reply.header.rcode == rcode
    assert reply.header.opcode == (data[2] >> 3) & 0xF
    assert reply.questions == [] and reply.rr == []


def test_the_answer_section_of_a_query_is_skipped_not_parsed() -> None:
    # A CAA record whose tag is not UTF-8 would make dnslib's RDATA parser raise a
    # UnicodeDecodeError; records we ignore are never handed to it.
    caa = b"\xc0\x0c\x01\x01\x00\x01\x00\x00\x00\x05\x00\x06\x00\x04\xff\xfe\xfd\xfc\x00\x00"
    data = header_bytes(an=1) + QNAME + b"\x00\x01\x00\x01" + caa
    assert addresses(ask(Resolver(TABLE), data)) == ["240.0.0.1", "240.0.0.2"]


def test_a_long_chain_of_compression_pointers_is_formerr_not_a_crash() -> None:
    # Record 1's RDATA (skipped) holds a root label and then pointers, each to the one
    # before; record 2's owner points at the last. dnslib follows pointers recursively.
    start = 12 + 5 + 11  # header, root question, record 1 up to its RDATA
    chain = bytearray(b"\x00")
    for k in range(1, 2000):
        chain += struct.pack("!H", 0xC000 | (start + max(0, 2 * k - 3)))
    last = start + len(chain) - 2
    rr1 = b"\x00\x00\x01\x00\x01" + bytes(4) + struct.pack("!H", len(chain)) + bytes(chain)
    rr2 = struct.pack("!H", 0xC000 | last) + b"\x00\x01\x00\x01" + bytes(6)
    data = header_bytes(an=2) + b"\x00\x00\x01\x00\x01" + rr1 + rr2
    assert len(data) <= 4096
    command = Resolver(TABLE).handle(data, TCP)
    assert isinstance(command, Answer) and command.rcode == RCODE.FORMERR


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 11, header_bytes(flags=0x8180) + QNAME + b"\x00\x01\x00\x01"],
    ids=["empty", "short-header", "a-response"],
)
def test_nothing_to_answer_is_dropped(data: bytes) -> None:
    assert isinstance(Resolver(TABLE).handle(data, UDP), Drop)


def test_errors_carry_their_rcode_and_fault() -> None:
    assert RemoteProtocolError("x").rcode == RCODE.FORMERR
    assert RemoteProtocolError("x").caller_fault and not RemoteProtocolError("x").retryable
    assert UpstreamError("x").rcode == SERVFAIL and UpstreamError("x").retryable
    assert UpstreamError("x", rcode=RCODE.REFUSED).rcode == RCODE.REFUSED
    assert isinstance(InvalidTable("x"), ValueError)


# --- forwarding and the cache ---------------------------------------------------------


def test_other_names_are_forwarded_as_sent() -> None:
    sent = query("Example.org", "MX", qid=5)
    command = Resolver(TABLE).handle(sent, UDP)
    assert isinstance(command, Forward)
    assert command.query == sent
    assert command.question == Question((b"Example", b"org"), QTYPE.MX, 1)
    assert command.question.key == "example.org."


def _example_reply(ttl: int = 60) -> Reply:
    return Reply(NOERROR, answer=(RR("example.org", QTYPE.A, ttl=ttl, rdata=A("93.184.216.34")),))


def test_a_forwarded_answer_is_cached_with_aging_ttls_until_it_expires() -> None:
    clock = FakeClock()
    resolver = Resolver(TABLE, cache=AnswerCache(clock=clock))
    forward = resolver.handle(query("example.org", qid=1), UDP)
    assert isinstance(forward, Forward)
    first = answer_of(resolver.complete(forward, _example_reply(ttl=60)))
    assert first.header.id == 1 and first.header.aa == 0 and first.header.ra == 1
    assert addresses(first) == ["93.184.216.34"] and first.rr[0].ttl == 60

    clock.now += 25
    cached = ask(resolver, query("EXAMPLE.org", qid=2))
    assert cached.header.id == 2 and addresses(cached) == ["93.184.216.34"]
    assert cached.rr[0].ttl == 35

    clock.now += 35
    assert isinstance(resolver.handle(query("example.org"), UDP), Forward)


def test_the_cache_keys_on_type_and_holds_negative_answers_for_the_negative_ttl() -> None:
    clock = FakeClock()
    cache = AnswerCache(clock=clock, negative_ttl=10)
    resolver = Resolver(TABLE, cache=cache)
    forward = resolver.handle(query("gone.example.org"), UDP)
    assert isinstance(forward, Forward)
    assert answer_of(resolver.complete(forward, Reply(NXDOMAIN))).header.rcode == RCODE.NXDOMAIN
    assert isinstance(resolver.handle(query("gone.example.org", "AAAA"), UDP), Forward)
    assert ask(resolver, query("gone.example.org")).header.rcode == RCODE.NXDOMAIN
    clock.now += 10
    assert isinstance(resolver.handle(query("gone.example.org"), UDP), Forward)


def test_negative_answers_with_an_soa_live_for_its_minimum() -> None:
    clock = FakeClock()
    cache = AnswerCache(clock=clock, negative_ttl=100)
    question = Question((b"x", b"org"), QTYPE.A, 1)
    soa = RR("org", QTYPE.SOA, ttl=900, rdata=SOA("a.org", "b.org", (1, 2, 3, 4, 7)))
    cache.put(question, Reply(NXDOMAIN, authority=(soa,)))
    clock.now += 6
    assert cache.get(question) is not None
    clock.now += 1
    assert cache.get(question) is None


def test_failures_and_zero_ttls_are_not_cached_and_ttls_are_capped() -> None:
    clock = FakeClock()
    cache = AnswerCache(clock=clock, max_ttl=30)
    question = Question((b"example", b"org"), QTYPE.A, 1)
    cache.put(question, Reply(SERVFAIL))
    cache.put(question, _example_reply(ttl=0))
    assert cache.get(question) is None and len(cache) == 0
    cache.put(question, _example_reply(ttl=86400))
    clock.now += 30
    assert cache.get(question) is None


def test_the_cache_evicts_the_least_recently_used() -> None:
    cache = AnswerCache(max_entries=2, clock=FakeClock())
    a, b, c = (Question((name, b"org"), QTYPE.A, 1) for name in (b"a", b"b", b"c"))
    cache.put(a, _example_reply())
    cache.put(b, _example_reply())
    assert cache.get(a) is not None  # a is now the most recently used
    cache.put(c, _example_reply())
    assert len(cache) == 2
    assert cache.get(b) is None and cache.get(a) is not None and cache.get(c) is not None


def test_a_failed_forward_is_servfail_and_mesh_answers_never_touch_the_cache() -> None:
    resolver = Resolver(TABLE)
    forward = resolver.handle(query("example.org", edns=1232), UDP)
    assert isinstance(forward, Forward)
    failed = answer_of(resolver.fail(forward))
    assert failed.header.rcode == RCODE.SERVFAIL and opt_of(failed) is not None
    ask(resolver, query("backend.mesh"))
    assert len(resolver.cache) == 0


# --- the upstream edge ----------------------------------------------------------------


def test_resolv_conf_nameservers_are_read_in_order() -> None:
    text = (
        "# generated\nsearch example.org\nnameserver 10.0.0.2\n"
        "nameserver   fe80::1%eth0  # link-local\nnameserver bogus\noptions ndots:2\n"
        "nameserver 10.0.0.3;comment\n"
    )
    assert parse_resolv_conf(text) == ["10.0.0.2", "fe80::1%eth0", "10.0.0.3"]


def test_pycares_results_become_dnslib_records() -> None:
    result = pycares.DNSResult(
        answer=[
            pycares.DNSRecord("www.example.org", 5, 1, 30, pycares.CNAMERecordData("example.org")),
            pycares.DNSRecord("example.org", 1, 1, 30, pycares.ARecordData("93.184.216.34")),
            pycares.DNSRecord("example.org", 16, 1, 30, pycares.TXTRecordData(b"x" * 300)),
            pycares.DNSRecord("example.org", 52, 1, 30, pycares.TLSARecordData(3, 1, 1, b"k")),
        ],
        authority=[],
        additional=[],
    )
    reply = reply_from_result(result)
    assert reply.rcode == NOERROR
    assert [QTYPE[rr.rtype] for rr in reply.answer] == ["CNAME", "A", "TXT"]  # TLSA left out
    assert [len(chunk) for chunk in reply.answer[2].rdata.data] == [255, 45]


def test_c_ares_statuses_become_answers_or_errors() -> None:
    assert _translate("x", ares.DNSError(ares.ARES_ENOTFOUND, "nx")).rcode == NXDOMAIN
    assert _translate("x", ares.DNSError(ares.ARES_ENODATA, "none")).rcode == NOERROR
    with pytest.raises(UpstreamError) as refused:
        _translate("x", ares.DNSError(ares.ARES_EREFUSED, "refused"))
    assert refused.value.rcode == RCODE.REFUSED
    with pytest.raises(UpstreamError) as timeout:
        _translate("x", ares.DNSError(ares.ARES_ETIMEOUT, "timeout"))
    assert timeout.value.rcode == SERVFAIL and timeout.value.retryable


# --- TCP framing ----------------------------------------------------------------------


def test_frames_split_across_reads_and_several_in_one_read() -> None:
    decoder = FrameDecoder(max_size=100)
    stream = encode_frame(b"first") + encode_frame(b"") + encode_frame(b"third")
    assert decoder.feed(stream[:1]) == []
    assert decoder.feed(stream[1:8]) == [b"first"]
    assert decoder.pending == 1
    assert decoder.feed(stream[8:]) == [b"", b"third"]
    assert decoder.pending == 0


def test_a_frame_over_the_bound_is_the_peers_fault() -> None:
    with pytest.raises(RemoteProtocolError):
        FrameDecoder(max_size=100).feed(struct.pack("!H", 101))
    with pytest.raises(ValueError):
        encode_frame(bytes(65536))


# --- purity ---------------------------------------------------------------------------

PURE = ["table", "message", "core", "cache", "framing", "errors", "__init__"]


@pytest.mark.parametrize("module", PURE)
def test_the_core_modules_import_no_io(module: str) -> None:
    source = Path(__file__).parents[2] / "dns" / f"{module}.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "aiodns", "pycares", "grpc", "selectors"}


def test_dnslib_header_sanity() -> None:
    # The header helper above really builds what the FORMERR cases claim it builds.
    parsed = DNSHeader.parse(Buffer(header_bytes(qd=2)))
    assert parsed.q == 2 and parsed.id == 99 and parsed.rd == 1
    assert DNSQuestion("a.b").qname.label == (b"a", b"b")
