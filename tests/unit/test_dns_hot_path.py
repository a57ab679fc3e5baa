"""The resolver's hot path: answers packed once and copied per query, without dnslib.

What must hold: an answer from a packed copy says exactly what packing the answer for
that query would say (id, flags, question as sent, records, TTLs aged like the cache's,
OPT untouched); a query that is not plain (``query_key`` None) takes the full parse; a
cached forwarded answer stops being served the moment its cache entry expires, is
replaced or evicted, and a hit through the copy counts as a use of the entry.
"""

from __future__ import annotations

from dnslib import EDNS0, QTYPE, RR, SOA, A, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from dns.cache import AnswerCache
from dns.core import Answer, Forward, Resolver
from dns.errors import NOERROR
from dns.message import Question, Reply, Transport, query_key
from dns.table import DnsTable

UDP, TCP = Transport.UDP, Transport.TCP
TABLE = DnsTable.from_mapping({"backend.mesh": ["240.0.0.1", "fd00::1"], "web.mesh": ["240.0.0.2"]})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def query(
    name: str,
    qtype: str = "A",
    *,
    qid: int = 1,
    rd: int = 1,
    cd: int = 0,
    edns: int | None = None,
    do: bool = False,
    version: int = 0,
) -> bytes:
    record = DNSRecord(DNSHeader(id=qid, rd=rd, cd=cd), q=DNSQuestion(name, getattr(QTYPE, qtype)))
    if edns is not None:
        record.add_ar(EDNS0(udp_len=edns, flags="do" if do else "", version=version))
    return bytes(record.pack())


def data_of(command: object) -> bytes:
    assert isinstance(command, Answer), command
    return command.data


def upstream_reply(name: str = "example.org", ttl: int = 60) -> Reply:
    soa = RR("org", QTYPE.SOA, ttl=max(0, ttl - 50), rdata=SOA("a.org", "b.org", (1, 2, 3, 4, 50)))
    glue = RR("ns.example.org", QTYPE.A, ttl=ttl + 10, rdata=A("192.0.2.53"))
    answer = RR(name, QTYPE.A, ttl=ttl, rdata=A("93.184.216.34"))
    return Reply(NOERROR, answer=(answer,), authority=(soa,), additional=(glue,))


def forwarded(resolver: Resolver, data: bytes, reply: Reply) -> bytes:
    command = resolver.handle(data, UDP)
    assert isinstance(command, Forward), command
    return resolver.complete(command, reply).data


# --- query_key ------------------------------------------------------------------------


def test_a_plain_query_has_a_key_equal_for_any_case_id_and_flags() -> None:
    key = query_key(query("backend.mesh", qid=1, rd=1), UDP, 1232)
    assert key is not None and key[1:] == (512, 0)
    assert query_key(query("BACKEND.Mesh", qid=9, rd=0, cd=1), UDP, 1232) == key
    assert query_key(query("backend.mesh", "AAAA"), UDP, 1232) != key


def test_the_key_holds_the_size_bound_and_edns() -> None:
    assert query_key(query("a.mesh", edns=4096), UDP, 1232)[1:] == (1232, 1)  # type: ignore[index]
    assert query_key(query("a.mesh", edns=100, do=True), UDP, 1232)[1:] == (512, 2)  # type: ignore[index]
    assert query_key(query("a.mesh", edns=1400), TCP, 1232)[1:] == (65_535, 1)  # type: ignore[index]


def _two_questions() -> bytes:
    record = DNSRecord(DNSHeader(id=1), q=DNSQuestion("a.mesh"))
    record.add_question(DNSQuestion("b.mesh"))
    return bytes(record.pack())


def _with_answer() -> bytes:
    record = DNSRecord(DNSHeader(id=1), q=DNSQuestion("a.mesh"))
    record.add_answer(RR("a.mesh", QTYPE.A, rdata=A("10.0.0.1")))
    return bytes(record.pack())


def test_anything_but_a_plain_query_has_no_key() -> None:
    plain = query("a.mesh", edns=1232)
    pointer = plain[:12] + b"\xc0\x0c" + plain[-15:]  # a compressed question name
    not_root_opt = plain[:-11] + b"\x01" + plain[-10:]
    for data in [
        b"",
        plain[:16],
        bytes([plain[0], plain[1], plain[2] | 0x80]) + plain[3:],  # a response
        bytes([plain[0], plain[1], plain[2] | 0x10]) + plain[3:],  # opcode 2
        _two_questions(),
        _with_answer(),
        query("a.mesh", edns=1232, version=1),
        pointer,
        not_root_opt,
        plain[:-1],  # the OPT's RDLENGTH runs past the end
    ]:
        assert query_key(data, UDP, 1232) is None, data


# --- packed answers say what packing would ---------------------------------------------


def _records(data: bytes) -> list[tuple[object, ...]]:
    reply = DNSRecord.parse(data)
    return [
        (str(rr.rname).lower(), rr.rtype, rr.rclass, rr.ttl, str(rr.rdata).lower())
        for rr in [*reply.rr, *reply.auth, *reply.ar]
    ]


def _meaning(data: bytes) -> tuple[object, ...]:
    """What a client reads: the header, the question as sent, records up to name case.

    Names inside records may compress into the question, so they take the case of the
    client whose query was packed first: equal to DNS, not byte for byte.
    """
    reply = DNSRecord.parse(data)
    return (str(reply.header), reply.q.qname.label, reply.q.qtype, _records(data))


NAMES = ["backend.mesh", "Web.MESH", "mesh", "nope.mesh", "Example.org", "a.b.example.com"]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(NAMES),
    st.sampled_from(["A", "AAAA", "ANY", "MX", "SOA", "AXFR"]),
    st.tuples(st.integers(0, 65_535), st.integers(0, 1), st.integers(0, 1)),
    st.one_of(st.none(), st.integers(0, 65_535)),
    st.booleans(),
    st.sampled_from([UDP, TCP]),
)
def test_an_answer_from_a_packed_copy_says_what_packing_it_would(
    name: str,
    qtype: str,
    flags: tuple[int, int, int],
    edns: int | None,
    do: bool,
    transport: Transport,
) -> None:
    qid, rd, cd = flags
    target = query(name, qtype, qid=qid, rd=rd, cd=cd, edns=edns, do=do)
    # Warmed by the same question from another client: other id, flags and case.
    other = query(name.swapcase(), qtype, qid=qid ^ 0xFFFF, rd=1 - rd, cd=1 - cd, edns=edns, do=do)
    warm, fresh = Resolver(TABLE), Resolver(TABLE)
    for resolver in (warm, fresh):
        first = resolver.handle(other if resolver is warm else target, transport)
        if isinstance(first, Forward):
            resolver.complete(first, upstream_reply(name.swapcase()))
    warm.handle(other, transport)  # a hit: packed for the other client's question
    assert _meaning(data_of(warm.handle(target, transport))) == _meaning(
        data_of(fresh.handle(target, transport))
    )


def test_a_cached_forwarded_answer_is_copied_with_its_ttls_aged_and_its_opt_untouched() -> None:
    clock = FakeClock()
    resolver = Resolver(TABLE, cache=AnswerCache(clock=clock))
    data = query("example.org", edns=1232, do=True)
    forwarded(resolver, data, upstream_reply(ttl=60))
    clock.now += 0.5
    packed = data_of(resolver.handle(data, UDP))  # packs the copy
    assert data_of(resolver.handle(data, UDP)) == packed
    clock.now += 1.0
    aged = data_of(resolver.handle(data, UDP))
    # The OPT's TTL field holds the DO bit and EDNS version: never aged.
    assert [ttl for *_, ttl, _ in _records(aged)] == [59, 9, 69, 0x8000]
    reply = DNSRecord.parse(aged)
    opt = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    assert len(opt) == 1 and opt[0].edns_do == 1 and opt[0].edns_len == 1232
    # Byte for byte what a resolver that packs this reply now would send.
    other = Resolver(TABLE, cache=resolver.cache)
    assert data_of(other.handle(data, UDP)) == aged
    clock.now += 20  # the SOA's TTL runs out before the entry does: it stays at 0
    assert [ttl for *_, ttl, _ in _records(data_of(resolver.handle(data, UDP)))][:3] == [39, 0, 49]
    clock.now += 40
    assert isinstance(resolver.handle(data, UDP), Forward)  # the answer's TTL is up


def test_a_copy_is_served_only_while_its_cache_entry_is_the_same() -> None:
    clock = FakeClock()
    cache = AnswerCache(max_entries=1, clock=clock)
    resolver = Resolver(TABLE, cache=cache)
    data = query("example.org")
    forwarded(resolver, data, upstream_reply(ttl=60))
    resolver.handle(data, UDP)  # packed
    cache.put(Question((b"example", b"org"), QTYPE.A, 1), upstream_reply(ttl=7))  # replaced
    assert next(ttl for *_, ttl, _ in _records(data_of(resolver.handle(data, UDP)))) == 7
    forwarded(resolver, query("other.org"), upstream_reply("other.org"))  # evicts
    assert isinstance(resolver.handle(data, UDP), Forward)


def test_a_hit_on_a_copy_counts_as_a_use_of_the_cache_entry() -> None:
    cache = AnswerCache(max_entries=2, clock=FakeClock())
    resolver = Resolver(TABLE, cache=cache)
    a, b, c = (query(f"{n}.example.org") for n in "abc")
    forwarded(resolver, a, upstream_reply("a.example.org"))
    resolver.handle(a, UDP)  # packed
    forwarded(resolver, b, upstream_reply("b.example.org"))
    assert isinstance(resolver.handle(a, UDP), Answer)  # from the copy: a is now newest
    forwarded(resolver, c, upstream_reply("c.example.org"))  # evicts b, not a
    assert isinstance(resolver.handle(a, UDP), Answer)
    assert isinstance(resolver.handle(b, UDP), Forward)


def test_a_forwarded_copy_serves_only_the_question_as_first_sent() -> None:
    resolver = Resolver(TABLE, cache=AnswerCache(clock=FakeClock()))
    forwarded(resolver, query("example.org"), upstream_reply())
    resolver.handle(query("example.org"), UDP)  # packed for this case
    upper = data_of(resolver.handle(query("EXAMPLE.ORG", qid=3), UDP))
    reply = DNSRecord.parse(upper)
    assert reply.header.id == 3 and reply.q.qname.label == (b"EXAMPLE", b"ORG")
    assert [str(rr.rdata) for rr in reply.rr] == ["93.184.216.34"]
