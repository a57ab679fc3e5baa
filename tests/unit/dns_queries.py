"""What the DNS core tests share: a mesh table, a fake clock, and queries built with dnslib
and fed to ``Resolver.handle`` (``ask``), with their answers parsed back with dnslib as a
client would read them.
"""

from __future__ import annotations

from dnslib import EDNS0, QTYPE, RR, DNSRecord

from dns.core import Answer, Resolver
from dns.message import Transport
from dns.table import DnsTable

UDP, TCP = Transport.UDP, Transport.TCP


TABLE = DnsTable.from_mapping(
    {"backend.mesh": ["240.0.0.1", "240.0.0.2"], "web.default.svc.mesh": ["240.0.0.3"]},
    version="7",
)


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

