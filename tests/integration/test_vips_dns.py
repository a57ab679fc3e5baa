"""``<service>.mesh`` end to end: the zone CP in-process (standalone, SQLite) allocates the
VIPs and pushes the DNS table; the agents are real ``gossamer proxy run`` processes with
real Envoys; names are asked with the real ``dig`` and ``curl``.

On the host: ``dig @127.0.0.1 -p <agent's port> backend.mesh`` answers backend's VIP, the
VIP survives a zone CP restart, and a new service resolves without restarting the agent.

In a network namespace (root): web's sidecar runs inside it with its resolver on port 53
(``/etc/netns/<ns>/resolv.conf`` names it), the VIP range routed to ``lo`` and a veth pair
to the host, where the zone CP and backend's sidecar listen; ``curl http://backend.mesh/``
from the namespace goes through web's VIP listener to backend over mTLS. Without root or
namespaces that test skips, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from authority.token_authority import TokenAuthority
from gossamer.model.labels import VIP_OUTBOUNDS_LABEL
from gossamer.model.registry import parse_document
from gossamer.model.virtualip import VirtualIPSpec
from gossamer.settings import ZoneSettings
from gossamer.tokens import DATAPLANE
from tests.integration.agent_env import AgentProcess, envoy_pids, free_port
from tests.integration.test_agent_zone import http_backend
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

REPO = Path(__file__).parents[2]
DATAPLANE_YAML = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: {{ address }}
  inbound:
  - port: {{ inbound }}
    servicePort: {{ app }}
    tags: {gossamer.io/service: {{ service }}, gossamer.io/protocol: http}
"""
# Web's sidecar in the namespace asks for VIP listeners (the VIP range is routed there).
VIP_LABELS = f'labels: {{{VIP_OUTBOUNDS_LABEL}: "true"}}\n'


@dataclass
class Zone:
    directory: Path
    host: str
    xds_port: int
    cp: ZoneControlPlane | None = None

    async def start(self) -> ZoneControlPlane:
        self.cp = ZoneControlPlane(ZoneSettings(
            zone="lab", data_dir=self.directory, api_addr="127.0.0.1:0",
            xds_addr=f"{self.host}:{self.xds_port}", store="sqlite",
            tls_hosts=(self.host,)))
        await self.cp.start()
        return self.cp

    async def stop(self) -> None:
        if self.cp is not None:
            await self.cp.stop()
            self.cp = None

    def vip(self, service: str) -> str | None:
        assert self.cp is not None
        res = self.cp.state.get("VirtualIP", service, "default")
        return res.spec.ip if res is not None and isinstance(res.spec, VirtualIPSpec) else None

    async def sidecar(self, directory: Path, name: str, service: str, address: str,
                      app_port: int, *extra: str, labels: str = "",
                      prefix: Sequence[str] = ()
                      ) -> contextlib.AbstractAsyncContextManager[AgentProcess]:
        assert self.cp is not None
        directory.mkdir(parents=True)
        dp = directory / "dataplane.yaml"
        dp.write_text(labels + DATAPLANE_YAML)
        token, _ = await TokenAuthority(self.cp.manager, DATAPLANE, "default").issue(
            service, 3600)
        (directory / "token").write_text(token)
        variables = {"name": name, "service": service, "address": address,
                     "inbound": free_port(), "app": app_port}
        args = ["--dataplane", str(dp), "--cp", f"https://{self.host}:{self.xds_port}",
                "--token-file", str(directory / "token"),
                "--cp-ca", str(self.directory / "tls" / "ca.pem"),
                "--admin-port", str(free_port()), "--drain-time", "1s", *extra]
        for key, value in variables.items():
            args += ["--dataplane-var", f"{key}={value}"]
        return agent(directory, args, prefix)


@contextlib.asynccontextmanager
async def agent(directory: Path, args: list[str], prefix: Sequence[str] = ()
                ) -> AsyncIterator[AgentProcess]:
    """``gossamer proxy run`` (under ``prefix``, e.g. ``ip netns exec NS``), killed with
    its Envoy at the end."""
    work, stderr = directory / "work", directory / "agent.err"
    env = {**os.environ, "GOSSAMER_DNS_ADDR": "127.0.0.1:0"}  # unless --dns-addr says
    with open(stderr, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *prefix, sys.executable, "-c", "from cli.run_proxy import run; run()",
            *args, "--work-dir", str(work), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, env=env)
    try:
        yield AgentProcess(proc, work, stderr)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in envoy_pids(work):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {proc.returncode}: {err.decode()}")
    return out.decode()


async def dig(port: int, name: str, prefix: Sequence[str] = ()) -> list[str]:
    """The A records of ``name`` from the resolver at 127.0.0.1:``port``."""
    out = await run(*prefix, "dig", "@127.0.0.1", "-p", str(port), "+short", "+tries=1",
                    "+time=1", name, "A")
    return out.split()


async def stop(*agents: AgentProcess) -> None:
    for a in agents:
        a.proc.send_signal(signal.SIGTERM)
    for a in agents:
        assert await asyncio.wait_for(a.proc.wait(), 15) == 0, a.errors()
        assert "Traceback" not in a.errors(), a.errors()


async def test_mesh_names_resolve_to_stable_vips_and_new_services_appear_live(
        tmp_path: Path) -> None:
    zone = Zone(tmp_path / "zone", "127.0.0.1", free_port())
    await zone.start()
    dns_port = free_port()
    try:
        async with http_backend(b"hello from backend") as app, \
                await zone.sidecar(tmp_path / "backend", "backend-1", "backend", "127.0.0.1",
                                   app) as backend, \
                await zone.sidecar(tmp_path / "web", "web-1", "web", "127.0.0.1", free_port(),
                                   "--dns-addr", f"127.0.0.1:{dns_port}") as web:
            vip = await eventually(lambda: zone.vip("backend"), 60, "backend's VIP")
            assert ipaddress.ip_address(vip) in ipaddress.ip_network("240.0.0.0/4")
            await eventually(lambda: _answers(dns_port, "backend.mesh", [vip]), 30,
                             "dig backend.mesh to answer backend's VIP")
            web_vip = zone.vip("web")
            assert web_vip and web_vip != vip
            assert await dig(dns_port, "web.mesh") == [web_vip]
            assert await dig(dns_port, "nothing.mesh") == []

            # web's Envoy runs (its first certificate came) before the zone CP goes away
            await eventually(lambda: envoy_pids(web.work), 60, "web's Envoy started")

            # The zone CP restarts: the VIPs are the same, and so are the answers.
            await zone.stop()
            cp = await zone.start()
            await eventually(lambda: {"dp:default:backend-1", "dp:default:web-1"}
                             <= set(cp.agents.sessions), 60, "both agents registered again")
            await eventually(lambda: zone.vip("backend"), 10, "the VIPs loaded")
            assert (zone.vip("backend"), zone.vip("web")) == (vip, web_vip)
            assert await dig(dns_port, "backend.mesh") == [vip]

            # A new service gets a VIP, and the running agent answers for it.
            envoys = envoy_pids(web.work)
            await cp.manager.apply(parse_document({
                "type": "Dataplane", "name": "cache-1", "mesh": "default",
                "networking": {"address": "127.0.0.1", "inbound": [
                    {"port": free_port(), "servicePort": 6379,
                     "tags": {"gossamer.io/service": "cache"}}]}}))
            cache_vip = await eventually(lambda: zone.vip("cache"), 10, "cache's VIP")
            assert cache_vip not in (vip, web_vip)
            await eventually(lambda: _answers(dns_port, "cache.mesh", [cache_vip]), 10,
                             "cache.mesh to resolve without restarting the agent")
            assert web.proc.returncode is None and envoy_pids(web.work) == envoys
            insight = await eventually(lambda: cp.ads.insights.get("dp:default:web-1"), 60,
                                       "web's Envoy back on the zone CP")
            await eventually(lambda: insight.acked, 30, "web's Envoy to ACK")
            assert insight.nacked == 0, insight.last_nack
            await stop(web, backend)
    finally:
        await zone.stop()


async def _answers(port: int, name: str, expected: list[str],
                   prefix: Sequence[str] = ()) -> bool:
    return await dig(port, name, prefix) == expected


# -- in a network namespace ------------------------------------------------------------------

@dataclass(frozen=True)
class Namespace:
    name: str
    host_ip: str  # the host's end of the veth pair
    ns_ip: str    # the namespace's end

    @property
    def exec(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name)


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    used = _sh("ip", "-4", "-o", "addr").stdout
    for _ in range(50):
        net = ipaddress.ip_network(f"10.213.{secrets.randbelow(250) + 1}.0/30")
        if f" {net.network_address + 1}/" not in used and f" {net.network_address + 2}/" \
                not in used:
            return net
    raise AssertionError("no free 10.213.x.0/30 subnet for the veth pair")


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    """A namespace with ``lo`` up, the VIP range routed to it, a resolv.conf naming
    127.0.0.1, and a veth pair to the host; removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("SKIPPING the VIP listener test in a network namespace: it needs root "
                    "and iproute2 (`ip netns add`); the host test above still ran")
    tag = secrets.token_hex(3)
    name, host_if, ns_if = f"vipt-{tag}", f"vipth{tag}", f"viptn{tag}"
    made = _sh("ip", "netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"SKIPPING the VIP listener test: cannot create a network namespace: "
                    f"{made.stderr.strip()}")
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
                ("ip", "-n", name, "link", "set", "lo", "up"),
                ("ip", "-n", name, "route", "add", "local", "240.0.0.0/4", "dev", "lo")):
            done = _sh(*argv)
            assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        yield Namespace(name, host_ip, ns_ip)
    finally:
        _sh("ip", "netns", "del", name)  # takes the veth pair with it
        _sh("ip", "link", "del", host_if)
        shutil.rmtree(etc, ignore_errors=True)


async def test_curl_backend_dot_mesh_from_a_namespace_goes_through_the_vip_listener(
        tmp_path: Path, namespace: Namespace) -> None:
    ns = namespace
    zone = Zone(tmp_path / "zone", ns.host_ip, free_port())
    await zone.start()
    try:
        async with http_backend(b"hello from backend") as app, \
                await zone.sidecar(tmp_path / "backend", "backend-1", "backend", ns.host_ip,
                                   app) as backend, \
                await zone.sidecar(tmp_path / "web", "web-1", "web", ns.ns_ip, 8080,
                                   "--dns-addr", "127.0.0.1:53", labels=VIP_LABELS,
                                   prefix=ns.exec) as web:
            vip = await eventually(lambda: zone.vip("backend"), 60, "backend's VIP")
            await eventually(lambda: _answers(53, "backend.mesh", [vip], ns.exec), 60,
                             "backend.mesh to resolve in the namespace")

            async def through_the_vip() -> bool:
                out = await run(*ns.exec, "curl", "-s", "-m", "2", "http://backend.mesh/")
                return out == "hello from backend"

            await eventually(through_the_vip, 60,
                             "curl http://backend.mesh/ to reach backend from the namespace")
            assert zone.cp is not None
            insight = zone.cp.ads.insights["dp:default:web-1"]
            listeners = insight.config()["listeners"]
            assert f"outbound:{vip}:80" in listeners, sorted(listeners)
            assert insight.nacked == 0, insight.last_nack
            await stop(web, backend)
    finally:
        await zone.stop()
