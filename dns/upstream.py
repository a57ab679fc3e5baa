"""Upstream resolvers: where names outside the mesh go, through aiodns (c-ares).

``Upstream`` is the injectable network seam (STYLE habit 6): one coroutine from a
``Question`` to a ``Reply``. ``AiodnsUpstream`` is the real one. aiodns hands back
parsed records (pycares dataclasses), not bytes; ``reply_from_result`` converts them to
dnslib records at this edge, and ``_translate`` turns c-ares status codes into either a
negative ``Reply`` (NXDOMAIN, NODATA) or an ``UpstreamError`` carrying the rcode to
answer with (SERVFAIL for timeouts and unreachable servers). What c-ares does not parse
(DNSSEC records, unknown types) cannot be forwarded: those query types get NOTIMP, and
such records in an answer are left out.

Which servers: an explicit list, or the ``nameserver`` lines of ``/etc/resolv.conf``
(``system_nameservers``). Our own listening address is removed from that list: a
sidecar's namespace points its resolv.conf at us, and forwarding to ourselves would
loop until the timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiodns
import pycares
from aiodns import error as ares
from dnslib import AAAA, CAA, CNAME, MX, NAPTR, NS, PTR, RR, SOA, SRV, TXT, A, DNSLabel

from dns.errors import NOERROR, NOTIMP, NXDOMAIN, REFUSED, SERVFAIL, UpstreamError
from dns.message import Question, Reply

log = logging.getLogger(__name__)

_QTYPES = {1: "A", 28: "AAAA", 255: "ANY", 257: "CAA", 5: "CNAME", 15: "MX", 35: "NAPTR"}
_QTYPES |= {2: "NS", 12: "PTR", 6: "SOA", 33: "SRV", 16: "TXT"}
_QCLASSES = {1: "IN", 3: "CHAOS", 4: "HS", 254: "NONE", 255: "ANY"}


class Upstream(Protocol):
    """Resolves one question elsewhere; raises ``UpstreamError`` when it cannot."""

    async def resolve(self, question: Question) -> Reply: ...

    async def close(self) -> None: ...


def parse_resolv_conf(text: str) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf, in order, invalid ones skipped."""
    servers: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                ipaddress.ip_address(fields[1].split("%", 1)[0])
            except ValueError:
                continue
            servers.append(fields[1])
    return servers


def system_nameservers(
    path: str | Path = "/etc/resolv.conf", *, exclude: Iterable[tuple[str, int]] = ()
) -> list[str]:
    """The host's upstream servers as ``host:port`` strings, without ``exclude``."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        log.warning("cannot read %s: %s; no upstream resolvers", path, exc)
        return []
    excluded = {(host, port) for host, port in exclude}
    return [
        format_server(host, 53) for host in parse_resolv_conf(text) if (host, 53) not in excluded
    ]


def format_server(host: str, port: int) -> str:
    """c-ares's spelling of a server: ``1.2.3.4:53`` or ``[::1]:53``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class AiodnsUpstream:
    """Forwards questions to ``servers`` (``host:port`` strings) with aiodns.

    ``timeout`` bounds the whole resolution (all servers, all tries); c-ares gets a
    share of it per try. Create it inside the running event loop.
    """

    def __init__(self, servers: Sequence[str], *, timeout: float = 2.0, tries: int = 2) -> None:
        self.servers = tuple(servers)
        self.timeout = timeout
        self._resolver: aiodns.DNSResolver | None = None
        if self.servers:
            self._resolver = aiodns.DNSResolver(
                nameservers=list(self.servers), timeout=timeout / max(1, tries), tries=tries
            )

    async def resolve(self, question: Question) -> Reply:
        qtype = _QTYPES.get(question.qtype)
        qclass = _QCLASSES.get(question.qclass)
        if qtype is None or qclass is None:
            raise UpstreamError(f"cannot forward type {question.qtype}", rcode=NOTIMP)
        if self._resolver is None:
            raise UpstreamError("no upstream resolvers configured")
        name = question.key.rstrip(".") or "."
        if not name.isascii():
            # c-ares would IDNA-encode it and ask for a different name than the client's.
            raise UpstreamError(f"cannot forward a name that is not ASCII: {name!r}")
        try:
            future = self._resolver.query_dns(name, qtype, qclass)
            result = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise UpstreamError(f"{name}: upstream timed out after {self.timeout}s") from None
        except aiodns.error.DNSError as exc:
            return _translate(name, exc)
        except (UnicodeError, ValueError) as exc:  # names c-ares cannot encode
            raise UpstreamError(f"{name}: cannot forward: {exc}") from None
        return reply_from_result(result)

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None


def _translate(name: str, exc: aiodns.error.DNSError) -> Reply:
    code = exc.args[0] if exc.args else None
    if code == ares.ARES_ENOTFOUND:
        return Reply(NXDOMAIN)
    if code == ares.ARES_ENODATA:
        return Reply(NOERROR)
    rcode = {ares.ARES_EREFUSED: REFUSED, ares.ARES_ENOTIMP: NOTIMP}.get(code, SERVFAIL)
    raise UpstreamError(f"{name}: upstream failed: {exc}", rcode=rcode)


def reply_from_result(result: pycares.DNSResult) -> Reply:
    """A NOERROR ``Reply`` holding the records of ``result`` that dnslib can carry."""
    return Reply(
        NOERROR,
        answer=_records(result.answer),
        authority=_records(result.authority),
        additional=_records(result.additional),
    )


def _records(records: Iterable[pycares.DNSRecord]) -> tuple[RR, ...]:
    out: list[RR] = []
    for record in records:
        try:  # names that IDNA cannot encode are left out with their record
            rdata = _rdata(record.data)
            owner = DNSLabel(record.name)
        except UnicodeError:
            continue
        if rdata is None:
            continue
        out.append(RR(owner, record.type, record.record_class, record.ttl, rdata))
    return tuple(out)


def _rdata(data: Any) -> Any:
    """The dnslib RDATA for one pycares record data, or None for types we do not carry."""
    match data:
        case pycares.ARecordData(addr=addr):
            return A(addr)
        case pycares.AAAARecordData(addr=addr):
            return AAAA(addr)
        case pycares.CNAMERecordData(cname=cname):
            return CNAME(cname)
        case pycares.NSRecordData(nsdname=nsdname):
            return NS(nsdname)
        case pycares.PTRRecordData(dname=dname):
            return PTR(dname)
        case pycares.MXRecordData(priority=priority, exchange=exchange):
            return MX(exchange, priority)
        case pycares.SRVRecordData(priority=priority, weight=weight, port=port, target=target):
            return SRV(priority, weight, port, target)
        case pycares.TXTRecordData(data=text):
            # c-ares joins the character-strings; split again at the 255-octet limit.
            return TXT([text[i : i + 255] for i in range(0, len(text), 255)] or [b""])
        case pycares.SOARecordData():
            times = (data.serial, data.refresh, data.retry, data.expire, data.minimum)
            return SOA(data.mname, data.rname, times)
        case pycares.CAARecordData(critical=critical, tag=tag, value=value):
            return CAA(critical, tag, value)
        case pycares.NAPTRRecordData():
            return NAPTR(
                data.order,
                data.preference,
                data.flags.encode(),
                data.service.encode(),
                data.regexp.encode(),
                data.replacement,
            )
    return None
