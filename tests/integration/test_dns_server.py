"""The resolver on real sockets, asked by the real ``dig``.

Two servers on free ports of 127.0.0.1: ``resolver`` (the sidecar's, with a ``.mesh``
table) and ``upstream``, a second instance of our own server made authoritative for
``example.org`` through its configurable domain. There is no internet here, so
forwarding is tested against that local upstream, reached through aiodns as in
production. ``dig`` comes from Debian's dnsutils (``scripts/install-debian-packages``);
without it these tests skip, loudly.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from dnslib import DNSRecord

from dns.core import ResolverConfig
from dns.framing import encode_frame
from dns.server import DnsServer, ServerConfig
from dns.table import DnsTable

DIG = shutil.which("dig")
pytestmark = pytest.mark.skipif(
    DIG is None,
    reason="SKIPPING DNS SERVER TESTS — `dig` is missing: run scripts/install-debian-packages "
    "(Debian package dnsutils) as root",
)

TABLE = DnsTable.from_mapping(
    {
        "backend.mesh": ["240.0.0.1"],
        "web.mesh": ["240.0.0.2"],
        "big.mesh": [f"240.0.1.{i}" for i in range(32)],
    }
)
UPSTREAM = DnsTable.from_mapping({"example.org": ["93.184.216.34"]})


@dataclass
class Dig:
    status: str
    flags: set[str]
    answers: list[tuple[str, str, str]]  # (name, type, data)
    authority: list[tuple[str, str, str]]


def _section(text: str, title: str) -> list[tuple[str, str, str]]:
    match = re.search(rf";; {title} SECTION:\n(.*?)(?:\n\n|\Z)", text, re.S)
    if not match:
        return []
    rows = []
    for line in match.group(1).splitlines():
        name, _ttl, _cls, rtype, data = line.split(None, 4)
        rows.append((name, rtype, data))
    return rows


async def dig(port: int, *args: str) -> Dig:
    assert DIG is not None
    process = await asyncio.create_subprocess_exec(
        DIG, "@127.0.0.1", "-p", str(port), "+tries=1", "+time=5", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    text = out.decode()
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags: ([a-z ]*);", text)
    assert status and flags, f"dig printed no answer: {text}{err.decode()}"
    return Dig(
        status.group(1),
        set(flags.group(1).split()),
        _section(text, "ANSWER"),
        _section(text, "AUTHORITY"),
    )


@pytest.fixture
async def upstream() -> AsyncIterator[DnsServer]:
    config = ServerConfig(port=0, upstreams=(), resolver=ResolverConfig(domain="example.org"))
    async with DnsServer(UPSTREAM, config) as server:
        yield server


@pytest.fixture
async def resolver(upstream: DnsServer) -> AsyncIterator[DnsServer]:
    config = ServerConfig(port=0, upstreams=(f"127.0.0.1:{upstream.address[1]}",))
    async with DnsServer(TABLE, config) as server:
        yield server


async def test_a_mesh_name_resolves_to_its_vip_over_udp_and_tcp(resolver: DnsServer) -> None:
    port = resolver.address[1]
    for args in ([], ["+tcp"]):
        answer = await dig(port, *args, "backend.mesh")
        assert answer.status == "NOERROR" and "aa" in answer.flags
        assert answer.answers == [("backend.mesh.", "A", "240.0.0.1")]


async def test_aaaa_is_an_empty_noerror(resolver: DnsServer) -> None:
    answer = await dig(resolver.address[1], "AAAA", "backend.mesh")
    assert answer.status == "NOERROR" and answer.answers == []
    assert [row[1] for row in answer.authority] == ["SOA"]


async def test_an_unknown_mesh_name_is_nxdomain(resolver: DnsServer) -> None:
    answer = await dig(resolver.address[1], "unknown.mesh")
    assert answer.status == "NXDOMAIN" and answer.answers == []
    assert answer.authority[0][:2] == ("mesh.", "SOA")


async def test_a_table_update_is_visible_without_restart(resolver: DnsServer) -> None:
    port = resolver.address[1]
    assert (await dig(port, "new.mesh")).status == "NXDOMAIN"
    resolver.update_table(DnsTable.from_mapping({"new.mesh": ["240.0.0.9"]}, version="2"))
    assert (await dig(port, "new.mesh")).answers == [("new.mesh.", "A", "240.0.0.9")]
    assert (await dig(port, "+tcp", "backend.mesh")).status == "NXDOMAIN"


async def test_other_names_are_forwarded_to_the_upstream(resolver: DnsServer) -> None:
    port = resolver.address[1]
    for args in ([], ["+tcp"]):
        answer = await dig(port, *args, "example.org")
        assert answer.status == "NOERROR" and "aa" not in answer.flags and "ra" in answer.flags
        assert answer.answers == [("example.org.", "A", "93.184.216.34")]
    assert (await dig(port, "nothing.example.org")).status == "NXDOMAIN"
    assert (await dig(port, "MX", "example.org")).answers == []


async def test_an_unreachable_upstream_is_servfail() -> None:
    # A UDP port nobody listens on: the kernel answers with ICMP, c-ares gives up.
    config = ServerConfig(port=0, upstreams=("127.0.0.1:9",), upstream_timeout=1.0)
    async with DnsServer(TABLE, config) as server:
        answer = await dig(server.address[1], "example.org")
        assert answer.status == "SERVFAIL"
        assert (await dig(server.address[1], "backend.mesh")).status == "NOERROR"


async def test_a_truncated_udp_answer_makes_dig_retry_over_tcp(resolver: DnsServer) -> None:
    port = resolver.address[1]
    cut = await dig(port, "+noedns", "+ignore", "big.mesh")
    assert "tc" in cut.flags and cut.answers == []
    whole = await dig(port, "+noedns", "big.mesh")  # dig retries over TCP on TC
    assert "tc" not in whole.flags and len(whole.answers) == 32


# --- the TCP listener's bounds, with raw sockets ----------------------------------------


def _query(name: str, qid: int) -> bytes:
    record = DNSRecord.question(name)
    record.header.id = qid
    return bytes(record.pack())


async def _read_frame(reader: asyncio.StreamReader) -> DNSRecord:
    (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 10))
    return DNSRecord.parse(await asyncio.wait_for(reader.readexactly(length), 10))


async def test_one_tcp_connection_carries_pipelined_queries(resolver: DnsServer) -> None:
    reader, writer = await asyncio.open_connection(*resolver.address)
    writer.write(encode_frame(_query("example.org", 1)) + encode_frame(_query("web.mesh", 2)))
    replies = {(r := await _read_frame(reader)).header.id: r for _ in range(2)}
    assert str(replies[1].rr[0].rdata) == "93.184.216.34"
    assert str(replies[2].rr[0].rdata) == "240.0.0.2"
    writer.close()


def _bounded(idle: float) -> ServerConfig:
    return ServerConfig(
        port=0, upstreams=(), tcp_idle_timeout=idle, max_tcp_connections=1, max_tcp_query=512
    )


async def test_a_connection_over_the_limit_is_closed_at_once() -> None:
    async with DnsServer(TABLE, _bounded(idle=60)) as server:
        first_reader, first_writer = await asyncio.open_connection(*server.address)
        first_writer.write(encode_frame(_query("web.mesh", 3)))
        assert (await _read_frame(first_reader)).header.id == 3
        extra_reader, extra_writer = await asyncio.open_connection(*server.address)
        # Far sooner than the idle timeout: the only slot is taken.
        assert await asyncio.wait_for(extra_reader.read(), 10) == b""
        extra_writer.close()
        first_writer.write(encode_frame(_query("web.mesh", 4)))
        assert (await _read_frame(first_reader)).header.id == 4
        first_writer.close()


async def test_an_idle_connection_is_closed() -> None:
    async with DnsServer(TABLE, _bounded(idle=0.3)) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(encode_frame(_query("web.mesh", 3)))
        assert (await _read_frame(reader)).header.id == 3
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()


async def test_an_oversized_tcp_query_closes_the_connection_unanswered() -> None:
    async with DnsServer(TABLE, _bounded(idle=60)) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(struct.pack("!H", 513) + bytes(513))
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()


async def test_a_malformed_udp_query_gets_formerr(resolver: DnsServer) -> None:
    loop = asyncio.get_running_loop()
    received: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not received.done():
                received.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=resolver.address)
    try:
        transport.sendto(struct.pack("!6H", 77, 0x0100, 0, 0, 0, 0))  # no question
        reply = DNSRecord.parse(await asyncio.wait_for(received, 10))
    finally:
        transport.close()
    assert reply.header.id == 77 and reply.header.rcode == 1
