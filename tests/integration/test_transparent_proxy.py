"""``proxy run --transparent`` with ``proxy redirect install``: real Envoy, nft, curl.

The workload ``web`` lives in a fresh network namespace joined to the root namespace by a
veth pair, with the redirect installed (``--exclude-uid 65534``) and its sidecar started
as root with ``--transparent --run-as nobody``, so the agent runs itself again as
``nobody`` (its resolver and Envoy too). The zone CP (in-process), ``backend``'s sidecar
(not transparent) and a server outside the mesh are in the root namespace, on the veth.
Then from web's namespace, plain ``curl`` with the host's resolv.conf:

- ``http://backend.mesh/`` (DNS captured to the sidecar's resolver), the VIP, and
  backend's real inbound address (mTLS only: a plain connection there would fail) all
  reach backend through the outbound capture listener;
- a MeshTrafficPermission Deny, a MeshTimeout and a MeshHTTPRoute act on that traffic;
- the outside server is reached by passthrough, and refused once the Mesh says
  ``networking.outbound.passthrough: false``.

Skipped loudly without root, network namespaces or nft.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from authority.token_authority import TokenAuthority
from gossamer.model.mesh import MeshSpec
from gossamer.model.registry import parse_document, to_document
from gossamer.pki.certs import new_leaf, new_root_ca
from gossamer.settings import ZoneSettings
from gossamer.tokens import DATAPLANE
from tests.dataplane_apps import HttpApp, listen_port
from tests.dataplane_env import (
    DRAINING,
    Member,
    _differs,
    desired_versions,
    envoy_versions,
)
from tests.integration.agent_env import agent_process, envoy_pids
from tests.integration.traffic.policies import policy, to_backend
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

pytestmark = pytest.mark.asyncio(loop_scope="module")
GOSSAMER = Path(sys.executable).with_name("gossamer")
NOBODY = 65534
WEB = Member("web-1", "web", 0)
BACKEND = Member("backend-1", "backend", 0)
SVC = "gossamer.io/service"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert not check or done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done


@dataclass
class Net:
    ns: str
    host_ip: str  # the root namespace's end of the veth
    web_ip: str

    def run(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def curl(self, url: str, *extra: str) -> tuple[int | None, str]:
        """(HTTP status, body) of a GET from web's namespace; None when no answer came."""
        done = self.run("curl", "-sS", "--max-time", "5", "-o", "-", "-w",
                        "\n%{http_code}", *extra, url)
        body, _, code = done.stdout.rpartition("\n")
        return (int(code) if done.returncode == 0 else None), body


@contextlib.contextmanager
def network() -> Iterator[Net]:
    if os.geteuid() != 0 or not shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin") or \
            not shutil.which("curl"):
        pytest.skip("SKIPPING the transparent proxy tests: they need root, nft and curl")
    tag = secrets.token_hex(3)
    ns, host_link = f"tpw-{tag}", f"tph-{tag}"
    if sh("ip", "netns", "add", ns, check=False).returncode != 0:
        pytest.skip("SKIPPING the transparent proxy tests: cannot create a namespace")
    octet = secrets.randbelow(250) + 1
    net = Net(ns, f"10.217.{octet}.1", f"10.217.{octet}.2")
    try:
        sh("ip", "link", "add", host_link, "type", "veth", "peer", "name", "w0", "netns", ns)
        sh("ip", "addr", "add", f"{net.host_ip}/24", "dev", host_link)
        sh("ip", "link", "set", host_link, "up")
        sh("ip", "-n", ns, "addr", "add", f"{net.web_ip}/24", "dev", "w0")
        sh("ip", "-n", ns, "link", "set", "w0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", net.host_ip)
        yield net
    finally:
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", host_link, check=False)


@contextlib.contextmanager
def outside_server(address: str, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """A plain HTTP server outside the mesh (HTTPS with ``tls``), answering ``outside``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "7")
            self.end_headers()
            self.wfile.write(b"outside")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def outside_tls_server(address: str, name: str, directory: Path) -> Iterator[tuple[int, Path]]:
    """``outside_server`` over TLS, with a certificate for ``name`` from a test CA; yields
    its port and the CA file."""
    now = dt.datetime.now(dt.UTC)
    ca = new_root_ca("outside test CA", now, dt.timedelta(hours=1))
    leaf = new_leaf(ca, name, now, dt.timedelta(hours=1), dns=[name], client=False)
    (directory / "outside.pem").write_bytes(leaf.cert_pem() + ca.cert_pem())
    (directory / "outside.key").write_bytes(leaf.key_pem())
    (directory / "ca.pem").write_bytes(ca.cert_pem())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "outside.pem", directory / "outside.key")
    with outside_server(address, context) as port:
        yield port, directory / "ca.pem"


@dataclass
class Lab:
    net: Net
    cp: ZoneControlPlane
    backend_port: int  # backend's inbound (mTLS) on the host end of the veth
    outside_port: int
    web_admin: int
    backend_admin: int
    backend_app: HttpApp

    def vip(self) -> str:
        res = self.cp.state.get("VirtualIP", "backend", "default")
        assert res is not None
        return str(res.spec.ip)  # type: ignore[attr-defined]

    async def converged(self) -> None:
        """Both Envoys hold exactly what the zone CP would send them now (web's admin is
        reached from inside its namespace)."""
        dump = "/config_dump?include_eds"
        sidecars = ((WEB, ("ip", "netns", "exec", self.net.ns)), (BACKEND, ()))

        async def same() -> bool:
            for member, where in sidecars:
                admin = self.web_admin if member is WEB else self.backend_admin
                done = sh(*where, "curl", "-s", f"http://127.0.0.1:{admin}{dump}", check=False)
                have = envoy_versions(json.loads(done.stdout or "{}"))
                want = desired_versions(self.cp, member)
                assert want and not any(_differs(k, v, have.get(k, {}))
                                        for k, v in want.items()), f"{member.name} lags"
                # pooled connections keep an old filter chain (and its RBAC) until drained
                stats = sh(*where, "curl", "-s", "-G", "--data-urlencode",
                           f"filter={DRAINING}", f"http://127.0.0.1:{admin}/stats",
                           check=False).stdout
                assert "draining" in stats and not any(
                    line.split(": ")[-1].strip() != "0" for line in stats.splitlines()
                ), f"{member.name} drains: {stats}"
            return True

        await eventually(same, timeout=60, what="the Envoys to use the zone CP's config")

    async def apply(self, *docs: dict[str, Any]) -> None:
        resources = [parse_document(doc) for doc in docs]
        for res in resources:
            await self.cp.manager.apply(res)
        await eventually(lambda: all(getattr(self.cp.state.get(r.type, r.name, r.mesh),
                                             "spec", None) == r.spec for r in resources),
                         timeout=10, what="the zone CP's state to hold the change")
        await self.converged()

    async def delete(self, *docs: dict[str, Any]) -> None:
        for doc in docs:
            await self.cp.manager.delete(doc["type"], doc["name"], doc["mesh"])
        await eventually(lambda: all(self.cp.state.get(d["type"], d["name"], d["mesh"]) is None
                                     for d in docs), timeout=10,
                         what="the zone CP's state to drop the resources")
        await self.converged()


def dataplane(name: str, address: str, inbound: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Dataplane", "mesh": "default", "name": name,
            "networking": {"address": address, "inbound": [inbound]}}


async def token_file(cp: ZoneControlPlane, service: str, path: Path) -> Path:
    token, _ = await TokenAuthority(cp.manager, DATAPLANE, "default").issue(service, 3600)
    path.write_text(token)
    path.chmod(0o644)  # read by the sidecar once it runs as nobody
    return path


@contextlib.asynccontextmanager
async def web_sidecar(net: Net, cp_url: str, ca: Path, directory: Path, cp: ZoneControlPlane,
                      admin: int) -> AsyncIterator[subprocess.Popen[bytes]]:
    directory.mkdir(mode=0o755)
    dp = directory / "dataplane.yaml"
    # An inbound, so that policies selecting the service web select this proxy.
    dp.write_text(yaml.safe_dump(dataplane("web-1", net.web_ip, {
        "port": listen_port(), "servicePort": listen_port(),
        "tags": {SVC: "web", "gossamer.io/protocol": "http"}})))
    token = await token_file(cp, "web", directory / "token")
    work = directory / "work"
    with open(directory / "agent.err", "wb") as err:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", net.ns, sys.executable, "-c",
             "from cli.run_proxy import run; run()", "--dataplane", str(dp), "--cp", cp_url,
             "--token-file", str(token), "--cp-ca", str(ca), "--admin-port", str(admin),
             "--work-dir", str(work), "--transparent", "--run-as", "nobody",
             "--dns-addr", "127.0.0.1:15053", "--drain-time", "1s",
             "--envoy-log-level", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            cwd=Path(__file__).parents[2])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        for pid in envoy_pids(work):
            os.kill(pid, 9)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def lab() -> AsyncIterator[Lab]:
    # Traversable by nobody (pytest's own tmp directory is root's only).
    directory = Path(tempfile.mkdtemp(prefix="gossamer-transparent-"))
    directory.chmod(0o755)
    backend_app = HttpApp("backend-1").start()
    try:
        with network() as net, outside_server(net.host_ip) as outside:
            xds = listen_port()
            cp = ZoneControlPlane(ZoneSettings(
                zone="lab", data_dir=directory / "zone", api_addr="127.0.0.1:0",
                xds_addr=f"{net.host_ip}:{xds}", store="sqlite"))
            await cp.start()
            try:
                async with contextlib.AsyncExitStack() as stack:
                    yield await _running(net, cp, f"https://{net.host_ip}:{xds}", directory,
                                         outside, backend_app, stack)
            finally:
                await cp.stop()
    finally:
        backend_app.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def _running(net: Net, cp: ZoneControlPlane, url: str, directory: Path, outside: int,
                   backend_app: HttpApp, stack: contextlib.AsyncExitStack) -> Lab:
    ca = directory / "ca.pem"
    ca.write_bytes((directory / "zone" / "tls" / "ca.pem").read_bytes())
    ca.chmod(0o644)
    backend_dir = directory / "backend-1"
    backend_dir.mkdir()
    inbound = listen_port()
    (backend_dir / "dataplane.yaml").write_text(yaml.safe_dump(dataplane(
        "backend-1", net.host_ip, {"port": inbound, "servicePort": backend_app.port,
                                   "tags": {SVC: "backend", "gossamer.io/protocol": "http"}})))
    token = await token_file(cp, "backend", backend_dir / "token")
    backend_admin = listen_port()
    await stack.enter_async_context(agent_process(backend_dir, [
        "--dataplane", str(backend_dir / "dataplane.yaml"), "--cp", url, "--token-file",
        str(token), "--cp-ca", str(ca), "--admin-port", str(backend_admin),
        "--drain-time", "1s", "--envoy-log-level", "warning"]))
    sh("ip", "netns", "exec", net.ns, str(GOSSAMER), "proxy", "redirect", "install",
       "--exclude-uid", str(NOBODY))
    admin = listen_port()
    proc = await stack.enter_async_context(
        web_sidecar(net, url, ca, directory / "web-1", cp, admin))
    lab = Lab(net, cp, inbound, outside, admin, backend_admin, backend_app)

    def registered() -> bool:
        assert proc.poll() is None, (directory / "web-1" / "agent.err").read_text()[-2000:]
        return {"dp:default:web-1", "dp:default:backend-1"} <= set(cp.agents.sessions)

    await eventually(registered, timeout=60, what="both sidecars registered")
    await eventually(lambda: cp.state.get("VirtualIP", "backend", "default") is not None,
                     timeout=30, what="backend's VIP")
    await lab.converged()
    return lab


async def test_calls_by_name_vip_and_endpoint_ip_go_through_the_capture(lab: Lab) -> None:
    for url in ("http://backend.mesh/by-name", f"http://{lab.vip()}/by-vip",
                f"http://{lab.net.host_ip}:{lab.backend_port}/by-ip"):
        status, body = lab.net.curl(url)
        assert status == 200, f"{url}: {status} {body}"
        assert json.loads(body)["instance"] == "backend-1"
    # backend's inbound speaks mTLS only: the plain call by IP reached it through web's
    # Envoy, and so did the others (no listener binds the VIP: nothing else answers it)
    assert lab.backend_app.hits["/by-ip"] == lab.backend_app.hits["/by-vip"] == 1
    listeners = lab.net.run("curl", "-s", f"http://127.0.0.1:{lab.web_admin}/listeners").stdout
    assert "transparent:outbound" in listeners and lab.vip() not in listeners


async def test_policies_act_on_captured_traffic(lab: Lab) -> None:
    deny = policy("MeshTrafficPermission", "web-denied", {
        "targetRef": {"kind": "MeshService", "name": "backend"},
        "from": [{"targetRef": {"kind": "MeshService", "name": "web"},
                  "default": {"action": "Deny"}}]})
    await lab.apply(deny)
    assert lab.net.curl("http://backend.mesh/")[0] == 403
    await lab.delete(deny)
    assert lab.net.curl("http://backend.mesh/")[0] == 200

    timeout = to_backend("MeshTimeout", "backend-fast", {"http": {"requestTimeout": "300ms"}})
    await lab.apply(timeout)
    assert lab.net.curl("http://backend.mesh/slow/2000")[0] == 504
    assert lab.net.curl("http://backend.mesh/slow/10")[0] == 200
    await lab.delete(timeout)

    route = policy("MeshHTTPRoute", "tag-captured", {
        "targetRef": {"kind": "MeshService", "name": "web"},
        "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": "/tagged"}}],
            "default": {"filters": [{"type": "RequestHeaderModifier",
                                     "requestHeaderModifier": {
                                         "set": [{"name": "x-route", "value": "captured"}]}}]},
        }]}]})
    await lab.apply(route)
    try:
        for url in ("http://backend.mesh/tagged", f"http://{lab.net.host_ip}:"
                    f"{lab.backend_port}/tagged"):
            status, body = lab.net.curl(url)
            assert status == 200 and json.loads(body)["headers"].get("x-route") == "captured"
        status, body = lab.net.curl("http://backend.mesh/plain")
        assert status == 200 and "x-route" not in json.loads(body)["headers"]
    finally:
        await lab.delete(route)


async def test_passthrough_follows_the_mesh(lab: Lab) -> None:
    outside = f"http://{lab.net.host_ip}:{lab.outside_port}/"
    assert lab.net.curl(outside) == (200, "outside")
    mesh = lab.cp.state.get("Mesh", "default")
    assert mesh is not None and isinstance(mesh.spec, MeshSpec) and mesh.spec.passthrough
    doc = to_document(mesh, with_meta=False)
    doc["networking"] = {"outbound": {"passthrough": False}}
    await lab.apply(doc)
    try:
        assert lab.net.curl(outside)[0] is None  # closed by Envoy: no answer
        assert lab.net.curl("http://backend.mesh/")[0] == 200  # the mesh still works
    finally:
        doc.pop("networking")
        await lab.apply(doc)
    assert lab.net.curl(outside) == (200, "outside")


async def test_mesh_passthrough_lets_one_domain_out_and_nothing_else(lab: Lab) -> None:
    # The Mesh denies passthrough; a MeshPassthrough lets web reach the outside server by
    # one name (HTTP Host), on its port only. The outside server answers any Host, so
    # what is refused is refused by web's Envoy.
    port, host = lab.outside_port, lab.net.host_ip
    outside = f"http://{host}:{port}/"
    mesh = lab.cp.state.get("Mesh", "default")
    assert mesh is not None
    doc = to_document(mesh, with_meta=False)
    doc["networking"] = {"outbound": {"passthrough": False}}
    policy = {"type": "MeshPassthrough", "mesh": "default", "name": "outside", "spec": {
        "targetRef": {"kind": "MeshService", "name": "web"},
        "default": {"passthroughMode": "Matched", "matches": [
            {"type": "Domain", "value": "allowed.example", "protocol": "http",
             "port": port}]}}}
    await lab.apply(doc, policy)
    try:
        assert lab.net.curl(outside, "-H", "Host: allowed.example") == (200, "outside")
        assert lab.net.curl(outside, "-H", f"Host: allowed.example:{port}") == (200, "outside")
        assert lab.net.curl(outside, "-H", "Host: other.example")[0] == 404
        assert lab.net.curl(outside)[0] == 404  # Host: the address, not the domain
        with outside_server(host) as other_port:  # the same server on another port
            assert lab.net.curl(f"http://{host}:{other_port}/",
                                "-H", "Host: allowed.example")[0] is None
        assert lab.net.curl("http://backend.mesh/")[0] == 200  # the mesh still works
    finally:
        await lab.delete(policy)
        doc.pop("networking")
        await lab.apply(doc)
    assert lab.net.curl(outside) == (200, "outside")


async def test_mesh_passthrough_lets_tls_out_by_its_sni_only(lab: Lab, tmp_path: Path) -> None:
    # TLS passes through end to end, chosen by the SNI the client sends; the same server
    # called by another name (or by address, with no SNI) is refused by web's Envoy.
    host = lab.net.host_ip
    mesh = lab.cp.state.get("Mesh", "default")
    assert mesh is not None
    doc = to_document(mesh, with_meta=False)
    doc["networking"] = {"outbound": {"passthrough": False}}
    with outside_tls_server(host, "secure.example", tmp_path) as (port, ca):
        (tmp_path / "ca.pem").chmod(0o644)
        policy = {"type": "MeshPassthrough", "mesh": "default", "name": "tls-out", "spec": {
            "default": {"matches": [{"type": "Domain", "value": "secure.example",
                                     "protocol": "tls", "port": port}]}}}
        await lab.apply(doc, policy)
        try:
            def https(name: str, *verify: str) -> tuple[int | None, str]:
                return lab.net.curl(f"https://{name}:{port}/", *verify,
                                    "--resolve", f"{name}:{port}:{host}")
            assert https("secure.example", "--cacert", str(ca)) == (200, "outside")
            # -k: were it let through, the server would answer whatever the name
            assert https("other.example", "-k")[0] is None
            assert lab.net.curl(f"https://{host}:{port}/", "-k")[0] is None
        finally:
            await lab.delete(policy)
            doc.pop("networking")
            await lab.apply(doc)
