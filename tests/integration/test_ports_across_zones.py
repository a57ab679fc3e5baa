"""A service's own ports across zones, with real Envoys, real ``ip`` and real clients.

A global and two zones in-process. East runs, on the host, ``backend-db`` (a TCP echo
server behind an inbound with ``servicePort: 5432``) and ``api`` (one sidecar with two
HTTP inbounds, 8080 and 8081, each answering with its own port), and an ingress that
west reaches over a veth pair. West's control plane listens on the host's end of that
pair; web's sidecar runs in a network namespace of its own with its resolver on port 53
(``/etc/netns/<ns>/resolv.conf`` names it) and ``--vip-route``: nothing routes the VIP
range there by hand, the agent does. Then, from web's namespace, ``backend-db.mesh:5432``
echoes through west's VIP listener, east's ingress (SNI passthrough) and backend-db's
sidecar, and ``api.mesh`` answers on 8080 and 8081, each port from its own inbound.
Without root or namespaces the test skips, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.cluster import start_global, start_zone
from tests.integration.agent_env import agent_process
from tests.integration.ingress_env import Cluster, _ready, free_port, ingress_process, stop
from tests.integration.test_vips_dns import Namespace, _free_subnet, _sh, agent, dig, run
from tests.waiting import eventually

EAST_DATAPLANE = """\
type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
{inbounds}"""
INBOUND = """\
  - port: {port}
    servicePort: {service_port}
    serviceAddress: {app_address}
    tags: {{gossamer.io/service: {service}, gossamer.io/protocol: {protocol}}}
"""
WEB_DATAPLANE = """\
type: Dataplane
mesh: default
name: web-1
networking:
  address: {address}
  inbound:
  - port: {port}
    servicePort: 8080
    tags: {{gossamer.io/service: web, gossamer.io/protocol: http}}
"""


@pytest.fixture
def bare_namespace() -> Iterator[Namespace]:
    """A namespace with ``lo`` up, a resolv.conf naming 127.0.0.1 and a veth pair to the
    host, and no route for the VIP range; removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("SKIPPING ports across zones: it needs root and iproute2 (`ip netns add`)")
    tag = secrets.token_hex(3)
    name, host_if, ns_if = f"port-{tag}", f"porth{tag}", f"portn{tag}"
    made = _sh("ip", "netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"SKIPPING ports across zones: no network namespace: {made.stderr}")
    etc = Path("/etc/netns") / name
    try:
        net = _free_subnet()
        host_ip, ns_ip = str(net.network_address + 1), str(net.network_address + 2)
        for argv in (
                ("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if),
                ("ip", "link", "set", ns_if, "netns", name),
                ("ip", "addr", "add", f"{host_ip}/30", "dev", host_if),
                ("ip", "link", "set", host_if, "up"),
                ("ip", "-n", name, "addr", "add", f"{ns_ip}/30", "dev", ns_if),
                ("ip", "-n", name, "link", "set", ns_if, "up"),
                ("ip", "-n", name, "link", "set", "lo", "up")):
            done = _sh(*argv)
            assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        yield Namespace(name, host_ip, ns_ip)
    finally:
        _sh("ip", "netns", "del", name)
        _sh("ip", "link", "del", host_if)
        shutil.rmtree(etc, ignore_errors=True)


@pytest.fixture
async def zones(tmp_path: Path, bare_namespace: Namespace) -> AsyncIterator[Cluster]:
    """The global, east on loopback, and west's CP on the host's end of the veth pair."""
    lab = Cluster(await start_global(tmp_path / "global"), None, None,  # type: ignore[arg-type]
                  tmp_path)
    try:
        lab.running.append(await start_zone(lab.global_cp, "east", tmp_path / "zone-east"))
        lab.running.append(await start_zone(
            lab.global_cp, "west", tmp_path / "zone-west",
            xds_addr=f"{bare_namespace.host_ip}:0", tls_hosts=(bare_namespace.host_ip,)))
        lab.east, lab.west = lab.running
        for zone in lab.running:
            await eventually(lambda z=zone: _ready(z), timeout=15,
                             what=f"zone {zone.settings.zone} in sync")
        yield lab
    finally:
        for cp in [*lab.running, lab.global_cp]:
            await stop(cp)


@contextlib.asynccontextmanager
async def servers(address: str, ports: dict[int, bytes | None]
                  ) -> AsyncIterator[None]:
    """On ``address``, per port: an HTTP server answering the given body, or (None) a TCP
    echo server."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        writer.close()

    def http(body: bytes) -> object:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while await reader.readuntil(b"\r\n\r\n"):
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(body), body))
                    await writer.drain()
            writer.close()
        return serve

    started = [await asyncio.start_server(echo if body is None else http(body),  # type: ignore[arg-type]
                                          address, port) for port, body in ports.items()]
    try:
        yield
    finally:
        for server in started:
            server.close()


def east_sidecar(lab: Cluster, name: str, service: str, token: Path, app_address: str,
                 inbounds: list[tuple[int, str]]) -> contextlib.AbstractAsyncContextManager:
    """``gossamer proxy run`` in east's host namespace: one inbound per (servicePort,
    protocol), the application at ``app_address``."""
    directory = lab.directory / name
    directory.mkdir()
    text = "".join(INBOUND.format(port=free_port(), service_port=p, app_address=app_address,
                                  service=service, protocol=proto) for p, proto in inbounds)
    (directory / "dataplane.yaml").write_text(EAST_DATAPLANE.format(name=name, inbounds=text))
    assert lab.east.xds is not None
    return agent_process(directory, [
        "--dataplane", str(directory / "dataplane.yaml"), "--token-file", str(token),
        "--cp", f"https://127.0.0.1:{lab.east.xds.port}",
        "--cp-ca", str(lab.east.settings.directory / "tls" / "ca.pem"),
        "--admin-port", str(free_port()), "--drain-time", "1s"])


async def test_a_remote_service_answers_on_each_of_its_ports_by_name(
        zones: Cluster, bare_namespace: Namespace) -> None:
    lab, ns = zones, bare_namespace
    app = f"127.0.{secrets.randbelow(200) + 20}.{secrets.randbelow(200) + 20}"  # 5432 free
    db_token = await lab.dataplane_token("backend-db", lab.directory / "db.token")
    api_token = await lab.dataplane_token("api", lab.directory / "api.token")
    web_token = await lab.dataplane_token("web", lab.directory / "web.token")
    ingress_token = await lab.zone_token("east", ["ingress"], lab.directory / "ingress.token")
    web_dir = lab.directory / "web-1"
    web_dir.mkdir()
    (web_dir / "dataplane.yaml").write_text(WEB_DATAPLANE.format(address=ns.ns_ip,
                                                                 port=free_port()))
    assert lab.west.xds is not None
    port = free_port()
    async with servers(app, {5432: None, 8080: b"api on 8080", 8081: b"api on 8081"}), \
            east_sidecar(lab, "backend-db-1", "backend-db", db_token, app, [(5432, "tcp")]), \
            east_sidecar(lab, "api-1", "api", api_token, app,
                         [(8080, "http"), (8081, "http")]), \
            ingress_process(lab.directory / "ingress", lab.east, ingress_token, port,
                            "--listen", f"{ns.host_ip}:{port}"), \
            agent(web_dir, [
                "--dataplane", str(web_dir / "dataplane.yaml"), "--token-file", str(web_token),
                "--cp", f"https://{ns.host_ip}:{lab.west.xds.port}",
                "--cp-ca", str(lab.west.settings.directory / "tls" / "ca.pem"),
                "--admin-port", str(free_port()), "--drain-time", "1s",
                "--dns-addr", "127.0.0.1:53", "--vip-route"], ns.exec) as web:
        await eventually(lambda: _resolves(ns, "backend-db.mesh"), 90,
                         "backend-db.mesh to resolve in web's namespace")

        async def echoed() -> bool:
            return await _in_namespace(ns, *ECHO) == "ping 5432"

        await eventually(echoed, 90, "backend-db.mesh:5432 to echo from west")
        for api_port in (8080, 8081):
            async def answered(p: int = api_port) -> bool:
                out = await _in_namespace(ns, "curl", "-s", "-m", "3",
                                          f"http://api.mesh:{p}/")
                return out == f"api on {p}"

            await eventually(answered, 60, f"api.mesh:{api_port} to answer from west")
            for _ in range(6):  # every call, not one in two: each port its own inbound
                assert await answered()

        # The agent routed the range itself; Envoy took every VIP listener.
        routes = await run(*ns.exec, "ip", "route", "show", "table", "local")
        assert "local 240.0.0.0/4 dev lo" in routes, routes
        insight = lab.west.ads.insights["dp:default:web-1"]
        listeners = insight.config()["listeners"]
        vip = (await dig(53, "backend-db.mesh", ns.exec))[0]
        assert f"outbound:{vip}:5432" in listeners, sorted(listeners)
        assert insight.nacked == 0, insight.last_nack
        assert "Traceback" not in web.errors()


ECHO = ("python3", "-c", "import socket\n"
        "s = socket.create_connection(('backend-db.mesh', 5432), timeout=3)\n"
        "s.sendall(b'ping 5432'); s.shutdown(socket.SHUT_WR)\n"
        "print(s.recv(100).decode(), end='')")


async def _resolves(ns: Namespace, name: str) -> bool:
    return bool(await dig(53, name, ns.exec))


async def _in_namespace(ns: Namespace, *argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *ns.exec, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return out.decode() if proc.returncode == 0 else ""
