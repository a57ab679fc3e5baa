"""Hypothesis against the resolver's codec: no input may crash it.

The invariant, for any bytes ``data`` and either transport, as h11's fuzz harness
states its own: ``Resolver.handle(data, transport)`` returns exactly one of

- ``Answer``: bytes that dnslib parses as a response (QR set) to ``data``'s id, no
  larger than the transport allows (UDP: the client's EDNS size clamped to
  [512, 1232], 512 without OPT; TCP: 65,535);
- ``Forward``: a question that, completed with an upstream reply or failed, gives an
  ``Answer`` with the same guarantees;
- ``Drop``: only when there is no header to answer to or the message is a response;

and never raises; and a resolver answers every input as it would if it had packed no
answer before (its hot path, ``query_key``, never serves what the full parse would
answer otherwise). Inputs: arbitrary bytes; a valid header followed by arbitrary bytes
(to get past the first checks more often); valid queries with bytes flipped, inserted
or deleted; and every prefix of a valid query, one byte at a time. ``DnsTable``
construction from arbitrary text raises ``InvalidTable`` or nothing, and the TCP frame
decoder fed one byte at a time yields each message whole.
"""

from __future__ import annotations

import struct

from dnslib import CLASS, EDNS0, QTYPE, RR, A, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dns.core import Answer, Drop, Forward, Resolver
from dns.errors import DnsError, InvalidTable
from dns.framing import FrameDecoder, encode_frame
from dns.message import Reply, Transport, parse_request
from dns.table import DnsTable

TABLE = DnsTable.from_mapping(
    {"backend.mesh": ["240.0.0.1", "fd00::1"], "web.svc.mesh": ["240.0.0.2"]}
)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
transports = st.sampled_from([Transport.UDP, Transport.TCP])


def size_bound(data: bytes, transport: Transport) -> int:
    if transport is Transport.TCP:
        return 65_535
    try:
        request = parse_request(data, transport)
    except DnsError:
        return 512  # an error answer has no OPT, so the client's size does not apply
    payload = request.edns.payload if request.edns else 512
    return max(512, min(payload, 1232))


def check_answer(answer: Answer, data: bytes, transport: Transport) -> None:
    assert isinstance(answer.data, bytes)
    assert len(answer.data) <= size_bound(data, transport)
    reply = DNSRecord.parse(answer.data)
    assert reply.header.qr == 1
    assert reply.header.id == struct.unpack_from("!H", data)[0]


def check(data: bytes, transport: Transport) -> None:
    resolver = Resolver(TABLE)
    command = resolver.handle(data, transport)
    if isinstance(command, Drop):
        assert len(data) < 12 or data[2] & 0x80, "dropped a query that has a header"
    elif isinstance(command, Answer):
        check_answer(command, data, transport)
    else:
        assert isinstance(command, Forward)
        assert command.query == data
        records = (RR(list(command.question.labels), QTYPE.A, ttl=30, rdata=A("10.0.0.1")),)
        check_answer(resolver.complete(command, Reply(0, answer=records)), data, transport)
        check_answer(resolver.fail(command), data, transport)
        check_answer(resolver.fail(command, 5), data, transport)


MESH_NAMES = ["backend.mesh", "BACKEND.mesh", "web.svc.mesh", "svc.mesh", "mesh", "nope.mesh"]
OTHER_NAMES = ["example.org", "a.b.c.d.example.com", "x" * 63 + ".org"]
names = st.sampled_from([*MESH_NAMES, *OTHER_NAMES])
qtypes = st.sampled_from(["A", "AAAA", "ANY", "MX", "TXT", "SOA", "SRV", "PTR", "AXFR", "OPT"])


@st.composite
def valid_queries(draw: st.DrawFn) -> bytes:
    qclass = draw(st.sampled_from([CLASS.IN, CLASS.CH]))
    question = DNSQuestion(draw(names), getattr(QTYPE, draw(qtypes)), qclass)
    header = DNSHeader(id=draw(st.integers(0, 65_535)), rd=int(draw(st.booleans())))
    record = DNSRecord(header, q=question)
    if draw(st.booleans()):
        size = draw(st.integers(0, 65_535))
        version = draw(st.sampled_from([0, 0, 1]))
        record.add_ar(EDNS0(udp_len=size, version=version, flags=draw(st.sampled_from(["", "do"]))))
    return bytes(record.pack())


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    return draw(mutations_of(draw(valid_queries())))


@st.composite
def mutations_of(draw: st.DrawFn, query: bytes) -> bytes:
    data = bytearray(query)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=600), transports)
def test_arbitrary_bytes_never_crash_the_resolver(data: bytes, transport: Transport) -> None:
    check(data, transport)


@FUZZ
@given(
    st.integers(0, 65_535),
    st.integers(0, 0x7FFF),
    st.tuples(*[st.integers(0, 3)] * 4),
    st.binary(max_size=300),
    transports,
)
def test_a_header_with_garbage_behind_it_never_crashes_the_resolver(
    qid: int, flags: int, counts: tuple[int, int, int, int], tail: bytes, transport: Transport
) -> None:
    check(struct.pack("!HH4H", qid, flags, *counts) + tail, transport)


# Messages built from DNS-shaped pieces, so that generation gets past the header: a
# question name of labels (length bytes that agree with their ASCII text, up to the
# reserved 64..191, or that disagree), ended by the root, a compression pointer or
# nothing; a type and class; then records made of the same kinds of pieces.
# (Random bytes rarely get far: dnslib rejects labels that are not UTF-8.)
ALPHABET = "abcXYZ-_09"
labels = st.one_of(
    st.integers(1, 191)
    .flatmap(lambda n: st.text(ALPHABET, min_size=n, max_size=n))
    .map(lambda t: bytes([len(t)]) + t.encode()),
    st.sampled_from(["backend", "mesh", "svc", "org"]).map(lambda t: bytes([len(t)]) + t.encode()),
    st.tuples(st.integers(0, 255), st.text(ALPHABET + ".", max_size=80)).map(
        lambda t: bytes([t[0]]) + t[1].encode()
    ),
)
terminators = st.sampled_from([b"\x00", b"\x00", b"\xc0\x0c", b"\xc0\x00", b"\xff\xff", b""])
long_labels = st.integers(58, 63).map(lambda n: bytes([n]) + b"x" * n)  # names near 255
names_wire = st.tuples(
    st.one_of(st.lists(labels, max_size=5), st.lists(long_labels, min_size=4, max_size=5)),
    terminators,
).map(lambda t: b"".join(t[0]) + t[1])
pieces = st.one_of(
    names_wire,
    st.integers(0, 65_535).map(lambda v: struct.pack("!H", v)),
    st.sampled_from([b"\x00\x01\x00\x01", b"\x00\x29\x10\x00", bytes(4), bytes(6)]),
    st.binary(max_size=8),
)
# Mostly opcode QUERY with one question, or nearly every message stops at the header.
query_flags = st.one_of(st.integers(0, 0x07FF), st.integers(0, 0x7FFF))
counts = st.tuples(st.sampled_from([1, 1, 1, 0, 2]), *[st.sampled_from([0, 0, 0, 1, 2])] * 3)
type_class = st.tuples(st.sampled_from([1, 28, 15, 255, 252, 41, 0]), st.sampled_from([1, 3, 255]))


@FUZZ
@given(query_flags, counts, names_wire, type_class, st.lists(pieces, max_size=8), transports)
def test_messages_made_of_dns_pieces_never_crash_the_resolver(
    flags: int,
    counts: tuple[int, int, int, int],
    name: bytes,
    qtype_qclass: tuple[int, int],
    parts: list[bytes],
    transport: Transport,
) -> None:
    head = struct.pack("!HH4H", 7, flags, *counts) + name + struct.pack("!HH", *qtype_qclass)
    check(head + b"".join(parts), transport)


@FUZZ
@given(mutated_queries(), transports)
def test_mutated_queries_never_crash_the_resolver(data: bytes, transport: Transport) -> None:
    check(data, transport)


def meaning(command: object) -> object:
    """What a client reads from a command, up to the case of names inside records."""
    if not isinstance(command, Answer):
        return type(command)
    reply = DNSRecord.parse(command.data)
    records = [(str(rr.rname).lower(), rr.rtype, rr.ttl, str(rr.rdata).lower())
               for rr in [*reply.rr, *reply.auth, *reply.ar]]  # fmt: skip
    return str(reply.header), reply.questions, records


@FUZZ
@given(st.data(), transports)
def test_a_resolver_answers_from_packed_copies_as_it_would_without_them(
    data: st.DataObject, transport: Transport
) -> None:
    # The hot path (dns.message.query_key) must never serve a query that the full
    # parse would answer differently: warm a resolver with a valid query, then send a
    # mutation of it to that resolver and to one with the same cache but no copies.
    query = data.draw(valid_queries())
    warm = Resolver(TABLE)
    for _ in range(2):
        command = warm.handle(query, transport)
        if isinstance(command, Forward):
            records = (RR(list(command.question.labels), QTYPE.A, ttl=30, rdata=A("10.0.0.1")),)
            warm.complete(command, Reply(0, answer=records))
    # Other ids, flags and case keep the key (the copies answer them); the rest mostly not.
    other_client = st.tuples(st.binary(min_size=2, max_size=2), st.integers(0, 255)).map(
        lambda t: (
            t[0]
            + bytes([query[2] ^ (t[1] & 0x01), query[3] ^ (t[1] & 0x10)])
            + query[4:12]
            + query[12:].swapcase()
            if t[1] & 0x80
            else t[0] + query[2:]
        )
    )
    mutated = data.draw(st.one_of(mutations_of(query), other_client, st.just(query)))
    cold = Resolver(TABLE, cache=warm.cache)
    assert meaning(warm.handle(mutated, transport)) == meaning(cold.handle(mutated, transport))


@FUZZ
@given(valid_queries(), transports)
def test_every_prefix_of_a_valid_query_is_answered_or_dropped(
    data: bytes, transport: Transport
) -> None:
    for end in range(len(data) + 1):
        check(data[:end], transport)
    # And the whole query is never an error of ours: it is answered or forwarded.
    command = Resolver(TABLE).handle(data, transport)
    assert isinstance(command, Answer | Forward)


@FUZZ
@given(st.lists(valid_queries(), min_size=1, max_size=5))
def test_tcp_frames_fed_one_byte_at_a_time_come_out_whole(queries: list[bytes]) -> None:
    decoder = FrameDecoder()
    stream = b"".join(encode_frame(q) for q in queries)
    out: list[bytes] = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert out == queries and decoder.pending == 0


@FUZZ
@given(st.dictionaries(st.text(max_size=80), st.lists(st.text(max_size=40), max_size=3)))
def test_a_table_from_arbitrary_text_is_valid_or_invalid_never_broken(
    mapping: dict[str, list[str]],
) -> None:
    try:
        table = DnsTable.from_mapping(mapping)
    except InvalidTable:
        return
    for name, addresses in table.entries.items():
        assert name.endswith(".") and name == name.lower()
        assert table.lookup(name) == addresses
