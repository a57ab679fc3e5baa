"""The agent's ``.mesh`` resolver: tables from the Session replace the answers in place,
an invalid table keeps the last good one, a taken address is a clear error."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner
from dnslib import QTYPE, RCODE, DNSRecord

from cli.run_proxy import run
from dns.server import ServerConfig
from proxy.agent.cp_client import DnsEntry, DnsTable, dns_table_from_proto
from proxy.agent.errors import ResolverCannotStart
from proxy.agent.resolver import MeshResolver, resolver_table
from sync.v1 import agent_pb2


def table(version: str, **names: str) -> DnsTable:
    return DnsTable(version, tuple(DnsEntry(f"{n}.mesh", (ip,), (80,))
                                   for n, ip in names.items()))


async def ask(address: tuple[str, int], name: str) -> tuple[int, list[str]]:
    """One A query over UDP: the rcode and the addresses."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        await loop.sock_sendall(sock, DNSRecord.question(name, "A").pack())
        reply = DNSRecord.parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), 2))
    return reply.header.rcode, [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


@pytest.fixture
async def resolver() -> AsyncIterator[MeshResolver]:
    r = MeshResolver(ServerConfig(host="127.0.0.1", port=0, upstreams=()))
    await r.start()
    yield r
    await r.stop()


def test_the_agent_api_table_becomes_the_resolver_table() -> None:
    message = agent_pb2.DnsTable(version="v1", entries=[
        agent_pb2.DnsTable.Entry(name="backend.mesh", ips=["240.0.0.1"], ports=[80, 8080])])
    converted = resolver_table(dns_table_from_proto(message))
    assert converted.version == "v1"
    assert [str(a) for a in converted.lookup("Backend.Mesh.") or ()] == ["240.0.0.1"]


async def test_tables_replace_the_answers_without_a_restart(resolver: MeshResolver) -> None:
    assert await ask(resolver.address, "backend.mesh") == (RCODE.NXDOMAIN, [])
    assert resolver.update(table("1", backend="240.0.0.1"))
    assert await ask(resolver.address, "backend.mesh") == (RCODE.NOERROR, ["240.0.0.1"])
    assert resolver.update(table("2", backend="240.0.0.1", web="240.0.0.2"))
    assert await ask(resolver.address, "web.mesh") == (RCODE.NOERROR, ["240.0.0.2"])


async def test_an_invalid_table_keeps_the_last_good_one(resolver: MeshResolver,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    assert resolver.update(table("1", backend="240.0.0.1"))
    assert not resolver.update(table("2", backend="not-an-ip"))
    assert "ignoring DNS table 2" in caplog.text
    assert await ask(resolver.address, "backend.mesh") == (RCODE.NOERROR, ["240.0.0.1"])


async def test_a_taken_address_is_a_clear_error(resolver: MeshResolver) -> None:
    host, port = resolver.address
    second = MeshResolver(ServerConfig(host=host, port=port, upstreams=()))
    with pytest.raises(ResolverCannotStart, match=f"cannot listen on {host}:{port}.*--dns-addr"):
        await second.start()
    await second.stop()


@pytest.mark.parametrize("value", ["localhost:53", "127.0.0.1", "127.0.0.1:99999", ":53x"])
def test_dns_addr_must_be_an_address_literal_and_a_port(value: str) -> None:
    result = CliRunner().invoke(run, ["--dns-addr", value, "--dataplane", "x", "--cp",
                                      "https://127.0.0.1:5678", "--token-file", "t",
                                      "--cp-ca", "c"])
    assert result.exit_code == 2 and "--dns-addr" in result.stderr
    assert "expected IP:PORT" in result.stderr and "Traceback" not in result.output
