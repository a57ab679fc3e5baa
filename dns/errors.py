"""Errors of the ``dns`` package, split by whose fault they are (as in h11).

Each error carries the DNS ``rcode`` it maps onto on the wire (STYLE habit 4), so the
resolver answers a broken query with the right code without a lookup table of its own:

- ``RemoteProtocolError`` (FORMERR): the client sent bytes that are not a query we can
  answer (bad counts, bad names, two OPT records). Its fault; retrying cannot help.
- ``UnsupportedQuery`` (NOTIMP): a well-formed message asking for something a stub
  resolver does not do (an opcode other than QUERY, a query type upstream cannot carry).
- ``InvalidTable`` (no wire form): our caller built a DNS table that breaks its bounds.
- ``UpstreamError`` (SERVFAIL): the upstream resolvers failed or did not answer in time;
  a retry may help. Raised by the shell's upstream client, never by the pure core.

The pure core (``dns.core``) turns the first two into answers itself; only
``InvalidTable`` escapes it, from ``DnsTable`` construction.
"""

from __future__ import annotations

from gossamer.errors import GossamerError

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16  # an extended rcode: needs an OPT record to carry its upper bits


class DnsError(GossamerError):
    """Base of the package's errors; ``rcode`` is what a client is answered with."""

    title = "dns error"
    rcode = SERVFAIL

    def __init__(self, detail: str, *, rcode: int | None = None) -> None:
        super().__init__(detail)
        if rcode is not None:
            self.rcode = rcode


class RemoteProtocolError(DnsError):
    """The client's message is malformed: answered with FORMERR when it has a header."""

    http_status = 400
    title = "malformed DNS message"
    caller_fault = True
    rcode = FORMERR


class UnsupportedQuery(DnsError):
    """A well-formed message asking for something we do not implement."""

    http_status = 501
    title = "unsupported DNS query"
    caller_fault = True
    rcode = NOTIMP


class InvalidTable(DnsError, ValueError):
    """A DNS table that breaks its bounds (names, addresses, sizes): a caller's bug."""

    http_status = 400
    title = "invalid DNS table"
    caller_fault = True


class UpstreamError(DnsError):
    """The upstream resolvers failed or timed out: SERVFAIL, and a retry may help."""

    http_status = 502
    title = "upstream DNS failure"
    retryable = True
    rcode = SERVFAIL
