"""The zone egress in network namespaces (``deploy.local``), with a real "outside".

One environment for the module: a global, zones east and west with an ingress each and
an egress in west (``<p>west-egress``, 10.2.0.4), ``backend-1`` in east and ``web-1`` in
west behind transparent sidecars. The outside is a namespace of its own (``<p>outside``,
192.0.2.2) on a link to west's egress only: no other box has a route to it, and its
nftables input chain accepts port 443 from the egress's end (192.0.2.1) and nothing else.
Debian's nginx serves HTTPS there for ``httpbin.outside`` with a certificate from a test
CA, logging each request's client address, TLS version and SNI; ``/slow/`` proxies to a
local upstream that answers after two seconds. The Mesh has ``routing.zoneEgress: true``
and a MeshExternalService ``httpbin`` names nginx with TLS origination.

- ``curl http://httpbin.extsvc.mesh/`` in web-1 is answered by nginx, whose log shows the
  egress's address and TLS 1.3 with the SNI; a capture on the outside link holds TLS
  records only; web-1 cannot reach nginx itself;
- a MeshTrafficPermission denying web at the egress refuses it (503, nothing logged);
- a MeshTimeout of 500 ms on the external service answers ``/slow/`` with 504;
- a cross-zone call (``backend.mesh``) goes web-1's sidecar → west's egress → east's
  ingress (the Envoys' counters say so) and is still mTLS end to end: backend's sidecar
  denies web by its certificate (403).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy.local import netns, probes
from deploy.local.environment import Environment
from deploy.local.topology import EGRESS_ADMIN_PORT, EGRESS_PORT, Topology, Workload
from gossamer.pki.certs import new_leaf, new_root_ca
from tests.e2e import wire
from tests.e2e.support import deny, prefix, running
from tests.waiting import eventually_sync

TOPOLOGY = Topology(
    zones=("east", "west"),
    prefix=prefix("g"),
    egresses=("west",),
    workloads=(Workload("backend-1", "backend", "east"), Workload("web-1", "web", "west")),
)
EGRESS_END, OUTSIDE_IP = "192.0.2.1", "192.0.2.2"
NAME = "httpbin.outside"
SLOW_PORT = 8081
NGINX_CONF = """\
user root;
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    log_format egress '$remote_addr $ssl_protocol $ssl_server_name $request_uri $status';
    access_log {d}/access.log egress;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen {ip}:443 ssl;
        server_name {name};
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;  # Debian 12's nginx 1.22 stops at 1.2 by default
        location / {{ default_type text/plain; return 200 "outside"; }}
        location /slow/ {{ proxy_pass http://127.0.0.1:{slow}; }}
    }}
}}
"""
NFT_RULES = """\
table inet outside {{
    chain input {{
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ct state established,related accept
        ip saddr {egress} tcp dport 443 accept
    }}
}}
"""
# The slow upstream behind nginx's /slow/: answers every request after two seconds.
SLOW_APP = """\
import http.server, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(2)
        self.send_response(200); self.send_header("content-length", "4"); self.end_headers()
        self.wfile.write(b"slow")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H).serve_forever()
"""


@dataclass
class Outside:
    ns: str
    directory: Path
    ca_pem: bytes
    # The TCP streams on the outside link during the first calls (``routed``).
    captured: dict[wire.Flow, bytes] = field(default_factory=dict)

    def log(self) -> list[list[str]]:
        path = self.directory / "access.log"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    if shutil.which("nginx") is None or shutil.which("nft") is None:
        pytest.fail(
            "the zone egress e2e test needs nginx and nftables: run "
            "./scripts/install-debian-packages as root"
        )
    yield from running(TOPOLOGY, tmp_path_factory.mktemp("zone-egress"))


@pytest.fixture(scope="module")
def outside(env: Environment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outside]:
    """The outside namespace, linked to west's egress only, with nginx and its upstream."""
    t = env.topology
    ns, directory = f"{t.prefix}outside", tmp_path_factory.mktemp("outside")
    netns.add_namespace(ns)  # named with the prefix: the environment's cleanup removes it
    netns.add_veth(t.egress_ns("west"), "out0", ns, "eth0")
    netns.add_address(t.egress_ns("west"), "out0", f"{EGRESS_END}/30")
    netns.add_address(ns, "eth0", f"{OUTSIDE_IP}/30")
    netns.ip("link", "set", "lo", "up", ns=ns)
    netns.run(netns.exec_argv(ns, ["nft", "-f", "-"]), stdin=NFT_RULES.format(egress=EGRESS_END))
    now = dt.datetime.now(dt.UTC)
    ca = new_root_ca("outside test CA", now, dt.timedelta(hours=2))
    leaf = new_leaf(ca, NAME, now, dt.timedelta(hours=2), dns=[NAME], client=False)
    (directory / "server.pem").write_bytes(leaf.cert_pem() + ca.cert_pem())
    (directory / "server.key").write_bytes(leaf.key_pem())
    (directory / "server.key").chmod(0o600)
    (directory / "tmp").mkdir()
    (directory / "nginx.conf").write_text(
        NGINX_CONF.format(d=directory, ip=OUTSIDE_IP, name=NAME, slow=SLOW_PORT)
    )
    started = [
        subprocess.Popen(
            netns.exec_argv(ns, [sys.executable, "-c", SLOW_APP.format(port=SLOW_PORT)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            netns.exec_argv(
                ns, ["nginx", "-c", str(directory / "nginx.conf"), "-p", str(directory)]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        ),
    ]
    try:
        eventually_sync(
            lambda: (directory / "nginx.pid").exists(),
            timeout=20,
            what="nginx started in the outside namespace",
        )
        yield Outside(ns, directory, ca.cert_pem())
    finally:
        for proc in started:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _mesh_with_egress(env: Environment) -> str:
    mesh = json.loads(env.gossamer("get", "mesh", "default", "-o", "json"))
    doc = {k: v for k, v in mesh.items() if k in ("type", "name", "mtls", "networking")}
    return json.dumps({**doc, "routing": {"zoneEgress": True}})  # YAML reads JSON


def _external(ca_pem: bytes) -> str:
    secret = {
        "type": "Secret",
        "mesh": "default",
        "name": "outside-ca",
        "data": base64.b64encode(ca_pem).decode(),
    }
    external = {
        "type": "MeshExternalService",
        "mesh": "default",
        "name": "httpbin",
        "spec": {
            "match": {"port": 80, "protocol": "http"},
            "endpoints": [{"address": OUTSIDE_IP, "port": 443}],
            "tls": {
                "enabled": True,
                "verification": {"serverName": NAME, "caCert": {"secretRef": "outside-ca"}},
            },
        },
    }
    return json.dumps(secret) + "\n---\n" + json.dumps(external)


@pytest.fixture(scope="module")
def routed(
    env: Environment, outside: Outside, tmp_path_factory: pytest.TempPathFactory
) -> Environment:
    """The Mesh routed through the egress, httpbin defined, and its first answer in, with
    the outside link captured meanwhile (the egress's connections to nginx are kept open,
    so the first ones are the ones with a handshake)."""
    capture = tmp_path_factory.mktemp("capture") / "outside.pcap"
    tcpdump = subprocess.Popen(
        netns.exec_argv(
            outside.ns,
            [
                "tcpdump",
                "-i",
                "eth0",
                "--immediate-mode",
                "-U",
                "-n",
                "-s",
                "0",
                "-w",
                str(capture),
                "tcp",
                "port",
                "443",
            ],
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tcpdump.stderr is not None
        assert "listening on" in tcpdump.stderr.readline()
        env.apply(_mesh_with_egress(env))
        env.apply(_external(outside.ca_pem))
        eventually_sync(
            lambda: probes.call(env, "web-1", "http://httpbin.extsvc.mesh/first").body == "outside",
            timeout=90,
            what="web-1's first answer from httpbin through west's egress",
        )
        outside.captured = eventually_sync(
            lambda: (
                {
                    f: d
                    for f, d in wire.tcp_streams(capture.read_bytes(), 443).items()
                    if len(d) > 500
                }
                or None
            ),
            timeout=10,
            what="the egress's connection to nginx in the capture",
        )
    finally:
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)
    return env


def test_the_external_service_is_reached_through_the_egress_over_tls(
    routed: Environment, outside: Outside
) -> None:
    env = routed
    reply = probes.call(env, "web-1", "http://httpbin.extsvc.mesh/hello")
    assert (reply.status, reply.body) == (200, "outside"), reply
    # nginx saw the egress's end of the outside link, TLS 1.3 and the external service's SNI.
    assert [EGRESS_END, "TLSv1.3", NAME, "/hello", "200"] in outside.log()
    # On the wire between them: TLS records only, both ways, a handshake first.
    assert {src for src, _, _, _ in outside.captured} == {EGRESS_END, OUTSIDE_IP}
    for data in outside.captured.values():
        assert wire.tls_records(data)[0] == 22
        assert b"GET /first" not in data and b"HTTP/1.1" not in data
    # web-1 itself cannot reach nginx: no route, and the outside accepts only the egress.
    direct = netns.run_in(
        env.topology.workload_ns("web-1"),
        ["curl", "-sk", "-m", "3", f"https://{OUTSIDE_IP}/"],
        check=False,
        timeout=10,
        env=env.env,
    )
    assert direct.returncode != 0
    # The egress's Envoy counted the connection it terminated and the one it opened.
    stats = probes.admin_get(env, env.topology.egress_ns("west"), EGRESS_ADMIN_PORT, "/stats")
    assert _stat(stats, "cluster.httpbin.extsvc.default.mesh.upstream_cx_total") >= 1
    assert _stat(stats, "httpbin_extsvc_default_mesh.rbac.allowed") >= 1


def test_a_deny_at_the_egress_refuses_the_caller(routed: Environment, outside: Outside) -> None:
    env = routed
    denial = """\
type: MeshTrafficPermission
name: no-web-out
mesh: default
spec:
  targetRef: {kind: MeshExternalService, name: httpbin}
  from:
  - targetRef: {kind: MeshService, name: web}
    default: {action: Deny}
"""
    env.apply(denial)
    try:
        eventually_sync(
            lambda: probes.call(env, "web-1", "http://httpbin.extsvc.mesh/probe").status == 503,
            timeout=60,
            what="the Deny to reach west's egress",
        )
        assert probes.call(env, "web-1", "http://httpbin.extsvc.mesh/denied").status == 503
        assert not [line for line in outside.log() if "/denied" in line]
        stats = probes.admin_get(env, env.topology.egress_ns("west"), EGRESS_ADMIN_PORT, "/stats")
        assert _stat(stats, "httpbin_extsvc_default_mesh.rbac.denied") >= 1
    finally:
        env.gossamer("delete", "meshtrafficpermission", "no-web-out", "-m", "default")
    eventually_sync(
        lambda: probes.call(env, "web-1", "http://httpbin.extsvc.mesh/again").body == "outside",
        timeout=60,
        what="web-1 let through again",
    )


def test_a_timeout_on_the_external_service_applies(routed: Environment) -> None:
    env = routed
    assert probes.call(env, "web-1", "http://httpbin.extsvc.mesh/slow/a", timeout=10).body == "slow"
    env.apply("""\
type: MeshTimeout
name: httpbin-fast
mesh: default
spec:
  to:
  - targetRef: {kind: MeshExternalService, name: httpbin}
    default: {http: {requestTimeout: 500ms}}
""")
    try:
        eventually_sync(
            lambda: (
                probes.call(env, "web-1", "http://httpbin.extsvc.mesh/slow/b", timeout=10).status
                == 504
            ),
            timeout=60,
            what="the MeshTimeout at web-1's sidecar",
        )
    finally:
        env.gossamer("delete", "meshtimeout", "httpbin-fast", "-m", "default")


def test_a_cross_zone_call_goes_through_the_egress_with_mtls_end_to_end(
    routed: Environment,
) -> None:
    env = routed
    t = env.topology
    eventually_sync(
        lambda: probes.call(env, "web-1", "http://backend.mesh/").zone == "east",
        timeout=60,
        what="web-1's answer from backend in east",
    )
    tr = probes.trace(env, "web-1", "backend")
    assert tr.reply.served_by == ("backend", "backend-1", "east")
    assert tr.client_hops == [("backend", f"{t.egress_ip('west')}:{EGRESS_PORT}")]
    assert [h.split(":")[0] for _, h in tr.ingress_hops["east"]] == [t.workload_ip("backend-1")]
    stats = probes.admin_get(env, t.egress_ns("west"), EGRESS_ADMIN_PORT, "/stats")
    assert _stat(stats, "cluster.remote_backend.default.mesh.upstream_cx_total") >= 1
    # Still web's own certificate at backend's sidecar: a Deny for web there is a 403.
    env.apply(deny("web", "backend"))
    try:
        eventually_sync(
            lambda: probes.call(env, "web-1", "http://backend.mesh/").status == 403,
            timeout=60,
            what="backend's sidecar to deny web by its certificate",
        )
    finally:
        env.gossamer("delete", "meshtrafficpermission", "web-to-backend", "-m", "default")


def _stat(stats: str, name: str) -> int:
    for line in stats.splitlines():
        key, _, value = line.partition(": ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0
