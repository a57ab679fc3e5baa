"""The resolver's pure core at the wire: EDNS (echo, BADVERS), truncation and the size
bound per transport, malformed and unsupported queries answered with an error or dropped,
errors carrying their rcode, TCP framing, and that the core modules import no I/O.

No sockets and no event loop: queries are built by hand or with dnslib and fed to
``Resolver.handle``.
"""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSHeader, DNSQuestion, DNSRecord
from dnslib.buffer import Buffer

from dns.core import Answer, Drop, Forward, Resolver
from dns.errors import NOERROR, SERVFAIL, InvalidTable, RemoteProtocolError, UpstreamError
from dns.framing import FrameDecoder, encode_frame
from dns.message import Reply, Transport
from dns.table import MAX_ADDRESSES_PER_NAME, DnsTable
from tests.unit.dns_queries import TABLE, TCP, UDP, addresses, ask, opt_of, query


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

