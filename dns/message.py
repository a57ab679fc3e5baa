"""DNS messages in and out: parse a query into a ``Request``, pack a ``Reply`` into bytes.

This is the codec under the resolver, pure like everything but ``dns.server`` and
``dns.upstream``. dnslib reads and writes the wire format; this module decides what of
it we accept and translates every dnslib failure into ``RemoteProtocolError`` at this
boundary, so callers deal with our errors only.

What a query must be: at least a 12-byte header (shorter input has nobody to answer
and is dropped by the resolver), QR clear, opcode QUERY (else NOTIMP), exactly one
question, names of at most 255 octets with labels of at most 63, at most one OPT
record, owned by the root. EDNS0 (RFC 6891): the client's advertised UDP payload size
bounds a UDP answer, 512 without OPT, never below 512 and never above what we
advertise ourselves. An answer that does not fit is cut to its question (and OPT) with
TC set, and the client retries over TCP, where the bound is the 2-byte frame length.
"""

from __future__ import annotations

import enum
import functools
import struct
from dataclasses import dataclass

from dnslib import EDNS0, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from dnslib.buffer import BufferError as DnslibBufferError
from dnslib.dns import DNSError as DnslibError
from dnslib.label import DNSBuffer, DNSLabelError

from dns.errors import RemoteProtocolError, UnsupportedQuery

HEADER_SIZE = 12
MIN_UDP_PAYLOAD = 512  # RFC 1035; RFC 6891 says to treat smaller advertisements as 512
MAX_TCP_MESSAGE = 65_535
MAX_NAME_OCTETS = 255
MAX_LABEL_OCTETS = 63
OPCODE_QUERY = 0
QTYPE_OPT = 41


class Transport(enum.Enum):
    """How a query arrived, which decides the size bound of its answer."""

    UDP = "udp"
    TCP = "tcp"


@dataclass(frozen=True)
class Header:
    """The fields of the 12-byte header that an answer copies or checks."""

    id: int
    qr: bool
    opcode: int
    rd: bool
    cd: bool

    @classmethod
    def peek(cls, data: bytes) -> Header | None:
        """The header of ``data``, or None when there are fewer than 12 bytes."""
        if len(data) < HEADER_SIZE:
            return None
        ident, bits = struct.unpack_from("!HH", data)
        return cls(
            id=ident,
            qr=bool(bits & 0x8000),
            opcode=(bits >> 11) & 0xF,
            rd=bool(bits & 0x0100),
            cd=bool(bits & 0x0010),
        )


@dataclass(frozen=True)
class Question:
    """The one question of a query; ``labels`` keep the client's case (for 0x20 echo)."""

    labels: tuple[bytes, ...]
    qtype: int
    qclass: int

    @functools.cached_property
    def key(self) -> str:
        """The lower-case dotted name (``backend.mesh.``) the table and cache are keyed by.

        A label holding a dot is escaped, so ``a.b`` sent as one label never matches the
        two-label name ``a.b.``.
        """
        parts = (label.lower().decode("utf-8", "replace") for label in self.labels)
        return "".join(part.replace(".", "\\.") + "." for part in parts) or "."

    @property
    def name(self) -> str:
        """The name as sent, for logs."""
        return str(DNSLabel(self.labels))


@dataclass(frozen=True)
class Edns:
    """The client's OPT record: UDP payload size, EDNS version and the DO bit."""

    payload: int
    version: int = 0
    do: bool = False


@dataclass(frozen=True)
class Request:
    """A query we accepted: its header, its question, its OPT (or None), its transport."""

    header: Header
    question: Question
    edns: Edns | None
    transport: Transport

    def size_limit(self, max_udp_payload: int) -> int:
        """How large our answer may be: the client's EDNS size over UDP, 64 KiB over TCP."""
        if self.transport is Transport.TCP:
            return MAX_TCP_MESSAGE
        advertised = self.edns.payload if self.edns else MIN_UDP_PAYLOAD
        return max(MIN_UDP_PAYLOAD, min(advertised, max_udp_payload))


@dataclass(frozen=True)
class Reply:
    """What to answer, before packing: the rcode and the three record sections.

    Also what the upstream client returns for a forwarded question, and what the cache
    holds. dnslib ``RR`` objects are mutable; nothing here mutates them once built.
    """

    rcode: int
    answer: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()
    authoritative: bool = False


def parse_request(data: bytes, transport: Transport) -> Request:
    """Parse one query; ``RemoteProtocolError`` or ``UnsupportedQuery`` if it is none.

    The caller has already checked, with ``Header.peek``, that there is a header and
    that QR is clear.
    """
    header = Header.peek(data)
    if header is None:
        raise RemoteProtocolError("shorter than a DNS header")
    if header.opcode != OPCODE_QUERY:
        raise UnsupportedQuery(f"opcode {header.opcode} is not QUERY")
    try:
        return _read(data, header, transport)
    except (DnslibError, DnslibBufferError, DNSLabelError) as exc:
        raise RemoteProtocolError(f"cannot parse: {exc}") from None
    except RecursionError:
        # dnslib follows compression pointers recursively; a long chain of backward
        # pointers (possible in a 64 KiB TCP message) exhausts the stack.
        raise RemoteProtocolError("cannot parse: compression pointer chain too long") from None


def _read(data: bytes, header: Header, transport: Transport) -> Request:
    # Only the question and the OPT record matter in a query. The other records are
    # skipped by their RDLENGTH rather than handed to dnslib's per-type RDATA parsers:
    # less work, and no exposure to a parser's failure on RDATA we would ignore anyway.
    qdcount, ancount, nscount, arcount = struct.unpack_from("!4H", data, 4)
    if qdcount != 1:
        raise RemoteProtocolError(f"{qdcount} questions, expected exactly 1")
    buffer = DNSBuffer(data)
    buffer.offset = HEADER_SIZE  # Header.peek has read it
    dq = DNSQuestion.parse(buffer)
    labels = tuple(bytes(label) for label in dq.qname.label)
    _check_name(labels)
    for _ in range(ancount + nscount):
        _skip_record(buffer)
    opts = [opt for opt in (_skip_record(buffer) for _ in range(arcount)) if opt is not None]
    if len(opts) > 1:
        raise RemoteProtocolError("more than one OPT record")
    question = Question(labels=labels, qtype=dq.qtype, qclass=dq.qclass)
    return Request(header, question, opts[0] if opts else None, transport)


def _skip_record(buffer: DNSBuffer) -> Edns | None:
    """Step over one resource record; the EDNS fields if it is an OPT record."""
    owner = buffer.decode_name()
    rtype, rclass, ttl, rdlength = buffer.unpack("!HHIH")
    buffer.get(rdlength)
    if rtype != QTYPE_OPT:
        return None
    if owner.label:
        raise RemoteProtocolError("OPT record not owned by the root")
    return Edns(payload=rclass, version=(ttl >> 16) & 0xFF, do=bool(ttl & 0x8000))


def _check_name(labels: tuple[bytes, ...]) -> None:
    # dnslib reads label lengths 64..191 as lengths (RFC 1035 reserves them) and does
    # not bound the whole name; both would fail later when we pack the answer.
    if any(len(label) > MAX_LABEL_OCTETS or not label for label in labels):
        raise RemoteProtocolError("a label is empty or longer than 63 octets")
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME_OCTETS:
        raise RemoteProtocolError("name longer than 255 octets")


# The hot path. Nearly every query a sidecar sees is the same few questions asked again:
# one question, no other records but an OPT, opcode QUERY. ``query_key`` reads what an
# answer to such a query depends on straight from the bytes, without dnslib, and the
# resolver keeps a packed answer per key; ``answer_from`` gives that answer the query's
# id, RD and CD bits and question case. Anything else (no key) takes the full parse.
# The key only ever finds an answer that a full parse of an equal query produced, so
# the short reading cannot accept what the full one refuses.

QueryKey = tuple[bytes, int, int]
"""(question section in lower case, size bound of the answer, EDNS: 0 none, 1 on, 2 DO)."""


def query_key(data: bytes, transport: Transport, max_udp_payload: int) -> QueryKey | None:
    """The key of a plain query, or None when ``data`` is anything else.

    Plain: a header with QR clear, opcode QUERY, one question and no records but at
    most one OPT of EDNS version 0, owned by the root; a name of uncompressed labels.
    Bytes after the records are ignored, as the full parse ignores them.
    """
    size = len(data)
    if size < HEADER_SIZE + 5 or data[2] & 0xF8 or data[4:11] != b"\x00\x01\x00\x00\x00\x00\x00":
        return None
    end = HEADER_SIZE
    length = data[end]
    while length:
        if length > MAX_LABEL_OCTETS:
            return None
        end += length + 1
        if end >= size:
            return None
        length = data[end]
    end += 5  # the root label, QTYPE, QCLASS
    if end > size:
        return None
    arcount = data[11]
    if arcount == 0:
        edns, limit = 0, MIN_UDP_PAYLOAD
    elif arcount == 1 and data[end : end + 3] == b"\x00\x00\x29" and end + 11 <= size:
        payload, version, flags, rdlength = struct.unpack_from("!HxBHH", data, end + 3)
        if version or end + 11 + rdlength > size:
            return None
        edns = 2 if flags & 0x8000 else 1
        limit = max(MIN_UDP_PAYLOAD, min(payload, max_udp_payload))
    else:
        return None
    if transport is Transport.TCP:
        limit = MAX_TCP_MESSAGE
    return data[HEADER_SIZE:end].lower(), limit, edns


def answer_from(template: bytes, query: bytes, question_end: int) -> bytes:
    """``template``, packed for a query with an equal question (up to case), id 0 and
    RD and CD clear, made to answer ``query``: its id, RD and CD bits and its question.

    Records that point at the question name by compression follow it, so the client's
    case is echoed there too. ``question_end`` is where both questions end.
    """
    flags = bytes((template[2] | (query[2] & 0x01), template[3] | (query[3] & 0x10)))
    return (
        query[:2]
        + flags
        + template[4:HEADER_SIZE]
        + query[HEADER_SIZE:question_end]
        + template[question_end:]
    )


def ttl_offsets(message: bytes) -> tuple[int, ...]:
    """Where the TTL of each record of a message we packed is, but an OPT's (no TTL).

    Our own output only: well formed, so this walks it without checks.
    """
    qdcount, ancount, nscount, arcount = struct.unpack_from("!4H", message, 4)
    offset = HEADER_SIZE
    for _ in range(qdcount):
        offset = _skip_name(message, offset) + 4
    offsets: list[int] = []
    for _ in range(ancount + nscount + arcount):
        offset = _skip_name(message, offset)
        rtype, rdlength = struct.unpack_from("!H6xH", message, offset)
        if rtype != QTYPE_OPT:
            offsets.append(offset + 4)
        offset += 10 + rdlength
    return tuple(offsets)


def _skip_name(message: bytes, offset: int) -> int:
    length = message[offset]
    while length:
        if length >= 0xC0:  # a compression pointer ends the name
            return offset + 2
        offset += length + 1
        length = message[offset]
    return offset + 1


def age_ttls(message: bytes, offsets: tuple[int, ...], seconds: int) -> bytes:
    """``message`` with the TTLs at ``offsets`` lowered by ``seconds``, never below 0."""
    out = bytearray(message)
    for offset in offsets:
        (ttl,) = struct.unpack_from("!I", out, offset)
        struct.pack_into("!I", out, offset, max(0, ttl - seconds))
    return bytes(out)


def pack_reply(
    header: Header,
    question: Question | None,
    reply: Reply,
    *,
    edns: Edns | None,
    our_payload: int,
    limit: int,
) -> tuple[bytes, bool]:
    """Pack ``reply`` as the answer to a query with ``header``; returns (bytes, truncated).

    With ``edns`` (the client's), the answer carries our own OPT record: our payload
    size, version 0, the client's DO bit, and the upper bits of an extended rcode.
    Without it, an extended rcode cannot be said, so it falls back to SERVFAIL.
    """
    rcode = reply.rcode if edns is not None or reply.rcode < 16 else 2
    full = _record(header, question, reply, edns, our_payload, rcode, truncated=False)
    data = bytes(full.pack())
    if len(data) <= limit:
        return data, False
    empty = Reply(rcode=reply.rcode, authoritative=reply.authoritative)
    cut = _record(header, question, empty, edns, our_payload, rcode, truncated=True)
    return bytes(cut.pack()), True


def _record(
    header: Header,
    question: Question | None,
    reply: Reply,
    edns: Edns | None,
    our_payload: int,
    rcode: int,
    *,
    truncated: bool,
) -> DNSRecord:
    out = DNSRecord(
        DNSHeader(
            id=header.id,
            qr=1,
            opcode=header.opcode,
            aa=int(reply.authoritative),
            tc=int(truncated),
            rd=int(header.rd),
            ra=1,
            cd=int(header.cd),
            rcode=rcode & 0xF,
        )
    )
    if question is not None:
        out.add_question(DNSQuestion(DNSLabel(question.labels), question.qtype, question.qclass))
    out.add_answer(*reply.answer)
    out.add_auth(*reply.authority)
    out.add_ar(*reply.additional)
    if edns is not None:
        flags = "do" if edns.do else ""
        out.add_ar(EDNS0(flags=flags, udp_len=our_payload, ext_rcode=rcode >> 4, version=0))
    return out
