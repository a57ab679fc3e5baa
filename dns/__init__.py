"""The ``.mesh`` resolver that each sidecar agent runs (DESIGN §6).

Pure modules (no asyncio, no sockets; test them without either):

- ``table``: ``DnsTable``, names to VIPs, built from the agent API's message;
- ``message``: the codec over dnslib: parse a query, pack a reply, EDNS0, truncation;
  and the hot path's own short reading and writing (``query_key``, ``answer_from``);
- ``core``: ``Resolver.handle(bytes, transport) -> Answer | Forward | Drop``, answering
  repeated questions from answers it packed before;
- ``cache``: ``AnswerCache`` for forwarded answers (TTL, LRU, injectable clock);
- ``framing``: DNS-over-TCP length framing;
- ``errors``: the package's errors, each with its rcode.

Shells: ``upstream`` (aiodns forwarding, resolv.conf) and ``server`` (``DnsServer``: the
UDP and TCP listeners). They are not imported here, so importing ``dns`` stays pure.
"""

from dns.core import Answer, Drop, Forward, Resolver, ResolverConfig
from dns.errors import DnsError, InvalidTable, RemoteProtocolError, UnsupportedQuery, UpstreamError
from dns.message import Reply, Transport
from dns.table import DnsTable

__all__ = [
    "Answer",
    "DnsError",
    "DnsTable",
    "Drop",
    "Forward",
    "InvalidTable",
    "RemoteProtocolError",
    "Reply",
    "Resolver",
    "ResolverConfig",
    "Transport",
    "UnsupportedQuery",
    "UpstreamError",
]
