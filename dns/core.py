"""The resolver's decisions, with no I/O: bytes of a query in, a command out.

Theory of operation. The shell (``dns.server``) reads one query off a socket and calls
``Resolver.handle(data, transport)``, which returns one of three commands:

- ``Answer(data)``: bytes to send back as they are (a ``.mesh`` answer, a cached
  forwarded answer, or an error answer: FORMERR, NOTIMP, REFUSED, BADVERS);
- ``Forward(request)``: a name outside the mesh domain that the cache does not hold;
  the shell asks the upstream resolvers and calls ``Resolver.complete(forward, reply)``
  with what they said (or a SERVFAIL ``Reply`` on failure), which returns the ``Answer``
  and caches the reply;
- ``Drop(reason)``: nothing to answer (shorter than a header, or a response rather
  than a query: answering responses invites two servers to answer each other forever).

Names in the mesh domain (``mesh.`` by default) are ours: we are authoritative (AA set).
A name in the table answers A with its IPv4 VIPs and AAAA with its IPv6 VIPs (often
none: an empty NOERROR, so clients fall back to A at once), ANY with both, and any other
type with an empty NOERROR. Ancestors of names in the table (``mesh.`` itself) exist
too. Any other name in the domain is NXDOMAIN. Negative answers carry the zone's SOA in
the authority section so that clients cache them for its MINIMUM, a few seconds, as the
table changes. The table is replaced whole with ``update_table``.

Answers are packed once and reused. dnslib packs a message in tens of microseconds,
several times what the rest of a query costs, so ``handle`` keeps every answer it packs
for a plain query (``dns.message.query_key``) and gives the next query with the same
key a copy with its id, flags and question (``dns.message.answer_from``), read and
written without dnslib. ``.mesh`` answers stay packed until the table changes; cached
forwarded answers until the cache entry goes, their TTLs lowered in place as it ages,
so both cost the same on a hit.

``handle`` and ``complete`` never raise: every error in the query becomes an answer.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from dnslib import AAAA, RR, SOA, A

from dns.cache import AnswerCache, Lease
from dns.errors import BADVERS, NOERROR, NOTIMP, NXDOMAIN, REFUSED, SERVFAIL, DnsError
from dns.message import (
    HEADER_SIZE,
    Header,
    QueryKey,
    Question,
    Reply,
    Request,
    Transport,
    age_ttls,
    answer_from,
    pack_reply,
    parse_request,
    query_key,
    ttl_offsets,
)
from dns.table import Address, DnsTable, normalise_name

QTYPE_A = 1
QTYPE_SOA = 6
QTYPE_AAAA = 28
QTYPE_ANY = 255
# Zone transfers and the obsolete mailbox types: not for a stub resolver's zone.
ZONE_TRANSFER_QTYPES = frozenset({251, 252, 253, 254})
QCLASS_IN = 1
MAX_TEMPLATES = 8192  # packed answers kept; all dropped when full or the table changes
QCLASS_ANY = 255
# Templates are packed for this header: ``answer_from`` sets each query's id, RD and CD.
BLANK_HEADER = Header(id=0, qr=False, opcode=0, rd=False, cd=False)


@dataclass(frozen=True)
class ResolverConfig:
    """Settings of the resolver.

    ``domain``: the zone we answer for. ``ttl``: TTL of our A/AAAA records, short because
    VIPs move when the table changes. ``negative_ttl``: the SOA MINIMUM, how long clients
    may remember that a mesh name does not exist. ``max_udp_payload``: the EDNS payload
    size we advertise and the most we send over UDP (1232, the DNS flag day 2020 value
    that avoids IP fragmentation).
    """

    domain: str = "mesh"
    ttl: int = 5
    negative_ttl: int = 5
    max_udp_payload: int = 1232

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", normalise_name(self.domain))
        if not 0 <= self.ttl <= 2**31 - 1 or not 0 <= self.negative_ttl <= 2**31 - 1:
            raise ValueError("TTLs must be between 0 and 2**31-1")
        if not 512 <= self.max_udp_payload <= 65_535:
            raise ValueError("max_udp_payload must be between 512 and 65535")


@dataclass(frozen=True)
class Answer:
    """Send ``data`` to the client. ``rcode`` and ``truncated`` are for logs and tests."""

    data: bytes
    rcode: int
    truncated: bool = False


@dataclass(frozen=True)
class Forward:
    """Ask upstream for ``request.question``; ``query`` is the client's original bytes."""

    request: Request
    query: bytes

    @property
    def question(self) -> Question:
        return self.request.question


@dataclass(frozen=True)
class Drop:
    """Send nothing; ``reason`` is for logs."""

    reason: str


Command = Answer | Forward | Drop


@dataclass(frozen=True, slots=True)
class _Packed:
    """An answer packed for ``BLANK_HEADER``, reused for every query with its key.

    A ``.mesh`` answer (``lease`` None) holds until the table changes and serves the
    question in any case. A cached forwarded answer holds while its ``lease`` renews,
    with the TTLs at ``ttls`` lowered as the entry ages, and only for the question as
    first sent (``question``): its records keep the upstream's case, so only that
    question packs to the same bytes.
    """

    answer: Answer
    question: bytes = b""
    lease: Lease | None = None
    ttls: tuple[int, ...] = ()


class Resolver:
    """Answers ``.mesh`` names from a ``DnsTable`` and forwards the rest (see module doc)."""

    def __init__(
        self,
        table: DnsTable | None = None,
        *,
        config: ResolverConfig | None = None,
        cache: AnswerCache | None = None,
    ) -> None:
        self.config = config or ResolverConfig()
        self.cache = cache if cache is not None else AnswerCache()
        self._table = table or DnsTable()
        self._serial = 1
        self._soa = self._make_soa()
        self._packed: dict[QueryKey, _Packed] = {}

    @property
    def table(self) -> DnsTable:
        return self._table

    def update_table(self, table: DnsTable) -> None:
        """Answer from ``table`` from now on; the SOA serial moves so caches can tell."""
        self._table = table
        self._packed.clear()
        self._serial = self._serial % 0xFFFF_FFFF + 1
        self._soa = self._make_soa()

    def handle(self, data: bytes, transport: Transport) -> Command:
        """The command for one query received over ``transport``."""
        # The hot path: a plain query whose answer is already packed costs one short
        # read of the bytes, one dict lookup and a copy (see dns.message.query_key).
        key = query_key(data, transport, self.config.max_udp_payload)
        if key is not None:
            packed = self._packed.get(key)
            if packed is not None:
                end = HEADER_SIZE + len(key[0])
                if packed.lease is not None:
                    packed = self._renewed(key, packed, data)
                if packed is not None:
                    template = packed.answer
                    data = answer_from(template.data, data, end)
                    return Answer(data, template.rcode, template.truncated)
        return self._handle(data, transport, key)

    def _handle(self, data: bytes, transport: Transport, key: QueryKey | None) -> Command:
        header = Header.peek(data)
        if header is None:
            return Drop("shorter than a DNS header")
        if header.qr:
            return Drop("a response, not a query")
        try:
            request = parse_request(data, transport)
        except DnsError as exc:
            return self._error(header, exc.rcode)
        if request.edns is not None and request.edns.version != 0:
            return self._reply(request, Reply(rcode=BADVERS))
        if self._in_domain(request.question.key):
            return self._packed_answer(data, request, key, self._answer_mesh)
        found = self.cache.lookup(request.question)
        if found is not None:
            reply, lease = found
            build = functools.partial(self._reply, reply=reply)
            return self._packed_answer(data, request, key, build, lease)
        return Forward(request, data)

    def complete(self, forward: Forward, reply: Reply) -> Answer:
        """The answer to a forwarded query from the upstream's ``reply``, which is cached."""
        self.cache.put(forward.question, reply)
        return self._reply(forward.request, reply)

    def fail(self, forward: Forward, rcode: int = SERVFAIL) -> Answer:
        """The answer to a forwarded query that upstream could not resolve."""
        return self._reply(forward.request, Reply(rcode=rcode))

    def _in_domain(self, key: str) -> bool:
        domain = self.config.domain
        return key == domain or key.endswith("." + domain)

    def _renewed(self, key: QueryKey, packed: _Packed, data: bytes) -> _Packed | None:
        """``packed``, a cached forwarded answer to ``data``, as the cache holds it now."""
        lease = packed.lease
        assert lease is not None
        if not data.startswith(packed.question, HEADER_SIZE):  # same length: same question
            return None
        age = self.cache.renew(lease)
        if age is None or age == lease.age:
            return None if age is None else packed
        # Older by a second or more: lower the packed TTLs rather than pack it again.
        old = packed.answer
        aged = Answer(age_ttls(old.data, packed.ttls, age - lease.age), old.rcode, old.truncated)
        packed = _Packed(aged, packed.question, Lease(lease.key, lease.entry, age), packed.ttls)
        self._packed[key] = packed
        return packed

    def _packed_answer(
        self,
        data: bytes,
        request: Request,
        key: QueryKey | None,
        build: Callable[[Request], Answer],
        lease: Lease | None = None,
    ) -> Answer:
        """``build``'s answer to ``request``, packed once for every query with ``key``.

        Packing with dnslib is most of the cost of an answer: with a key, pack for
        ``BLANK_HEADER`` once and keep it for ``handle``'s hot path; without one (a
        query with more records than a question and an OPT), pack for this query.
        """
        if key is None:
            return build(request)
        template = build(Request(BLANK_HEADER, request.question, request.edns, request.transport))
        end = HEADER_SIZE + len(key[0])
        if len(self._packed) >= MAX_TEMPLATES:
            self._packed.clear()
        ttls = ttl_offsets(template.data) if lease is not None else ()
        self._packed[key] = _Packed(template, data[HEADER_SIZE:end], lease, ttls)
        return Answer(answer_from(template.data, data, end), template.rcode, template.truncated)

    def _answer_mesh(self, request: Request) -> Answer:
        question = request.question
        if question.qclass not in (QCLASS_IN, QCLASS_ANY):
            return self._reply(request, Reply(rcode=REFUSED))
        if question.qtype in ZONE_TRANSFER_QTYPES:
            return self._reply(request, Reply(rcode=NOTIMP))
        key = question.key
        addresses = self._table.lookup(key)
        exists = addresses is not None or self._table.exists(key) or key == self.config.domain
        if not exists:
            return self._reply(request, self._negative(NXDOMAIN))
        records = self._records(question, addresses or ())
        if key == self.config.domain and question.qtype in (QTYPE_SOA, QTYPE_ANY):
            records.append(self._soa)
        if not records:
            return self._reply(request, self._negative(NOERROR))
        return self._reply(request, Reply(NOERROR, answer=tuple(records), authoritative=True))

    def _records(self, question: Question, addresses: tuple[Address, ...]) -> list[RR]:
        wanted_a = question.qtype in (QTYPE_A, QTYPE_ANY)
        wanted_aaaa = question.qtype in (QTYPE_AAAA, QTYPE_ANY)
        owner = list(question.labels)
        records: list[RR] = []
        for address in addresses:
            if isinstance(address, ipaddress.IPv4Address) and wanted_a:
                records.append(RR(owner, QTYPE_A, QCLASS_IN, self.config.ttl, A(str(address))))
            elif isinstance(address, ipaddress.IPv6Address) and wanted_aaaa:
                rdata = AAAA(str(address))
                records.append(RR(owner, QTYPE_AAAA, QCLASS_IN, self.config.ttl, rdata))
        return records

    def _negative(self, rcode: int) -> Reply:
        return Reply(rcode, authority=(self._soa,), authoritative=True)

    def _make_soa(self) -> RR:
        domain = self.config.domain
        minimum = self.config.negative_ttl
        rdata = SOA(
            "ns." + domain,
            "hostmaster." + domain,
            (self._serial, 60, 30, 3600, minimum),
        )
        return RR(domain, QTYPE_SOA, QCLASS_IN, minimum, rdata)

    def _reply(self, request: Request, reply: Reply) -> Answer:
        limit = request.size_limit(self.config.max_udp_payload)
        data, truncated = pack_reply(
            request.header,
            request.question,
            reply,
            edns=request.edns,
            our_payload=self.config.max_udp_payload,
            limit=limit,
        )
        return Answer(data, reply.rcode, truncated)

    def _error(self, header: Header, rcode: int) -> Answer:
        # No question and no OPT: the query could not be read far enough to echo them.
        data, _ = pack_reply(header, None, Reply(rcode), edns=None, our_payload=0, limit=65_535)
        return Answer(data, rcode)
