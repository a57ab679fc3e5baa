"""The paths the data-plane benchmark measures, each to the same nginx (one worker, a fixed
2-byte body, no access log): nginx itself, a hand-written Envoy pair (static YAML, mTLS with
certificates from ``gossamer.pki.certs``), and two Gossamer sidecars programmed by a
standalone zone CP in this process. Each is a context manager that yields a ``Target``;
``ensure_tools`` installs ``wrk`` and ``nginx`` from Debian when missing (as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from authority.token_authority import TokenAuthority
from gossamer.pki.certs import KeyPair, new_leaf, new_root_ca
from gossamer.settings import ZoneSettings
from gossamer.tokens import DATAPLANE
from proxy.envoy_binary import envoy_binary
from tests.integration.agent_env import free_port
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

BODY = "ok"


NGINX_CONF = """\
daemon off;
user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{body}"; }}
    }}
}}
"""


# The hand-written pair: what an operator would write for one mTLS hop, nothing more.
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."


_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."


STATIC_COMMON = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {hcm}HttpConnectionManager
          stat_prefix: listener
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: /}}, route: {{cluster: upstream}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{listener_tls}  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {to}}}}}}}
{cluster_tls}"""


SERVER_TLS = """\
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": {tls}DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{filename: {dir}/server.pem}}
              private_key: {{filename: {dir}/server-key.pem}}
            validation_context:
              trusted_ca: {{filename: {dir}/ca.pem}}
"""


CLIENT_TLS = """\
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": {tls}UpstreamTlsContext
        sni: backend.default.mesh
        common_tls_context:
          tls_certificates:
          - certificate_chain: {{filename: {dir}/client.pem}}
            private_key: {{filename: {dir}/client-key.pem}}
          validation_context:
            trusted_ca: {{filename: {dir}/ca.pem}}
            match_typed_subject_alt_names:
            - {{san_type: URI, matcher: {{exact: "spiffe://default/backend"}}}}
"""


DATAPLANE_YAML = """\
type: Dataplane
mesh: default
name: {{ service }}-1
networking:
  address: 127.0.0.1
  inbound:
  - port: {{ inbound }}
    servicePort: {{ app }}
    tags: {gossamer.io/service: {{ service }}, gossamer.io/protocol: http}
"""


OUTBOUND = """\
  outbound:
  - port: {{ outbound }}
    tags: {gossamer.io/service: backend}
"""


@dataclass(frozen=True)
class Target:
    """Where wrk sends requests, and the processes (with their children) serving them."""

    port: int
    pids: tuple[int, ...]


def ensure_tools() -> None:
    """Install wrk and nginx from Debian when missing (root only)."""
    missing = [pkg for pkg, exe in (("wrk", "wrk"), ("nginx", "nginx"))
               if shutil.which(exe) is None and not Path(f"/usr/sbin/{exe}").exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"error: missing {' '.join(missing)}; install them (apt-get install -y ...)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


@contextlib.asynccontextmanager
async def process(argv: list[str], log: Path, env: dict[str, str] | None = None
                  ) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process with its output in ``log``, stopped (by its pid) on the way out."""
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        if proc.returncode is None:
            # Not SIGKILL first: nginx's master would leave its worker behind.
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def answers(port: int) -> bool:
    async with httpx.AsyncClient(timeout=2.0) as client:
        response = await client.get(f"http://127.0.0.1:{port}/")
    return response.status_code == 200 and response.text == BODY


@contextlib.asynccontextmanager
async def nginx(work: Path) -> AsyncIterator[Target]:
    work.mkdir()
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=work, port=port, body=BODY))
    async with process([nginx_binary(), "-p", str(work), "-c", str(conf)],
                       work / "out.log") as master:
        await eventually(lambda: answers(port), timeout=20, what="nginx")
        yield Target(port, (master.pid,))


def write_certs(work: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = new_root_ca("bench mesh", now, dt.timedelta(days=1))
    pairs: dict[str, KeyPair] = {
        "server": new_leaf(ca, "backend", now, dt.timedelta(days=1),
                           uris=["spiffe://default/backend"]),
        "client": new_leaf(ca, "web", now, dt.timedelta(days=1), uris=["spiffe://default/web"]),
    }
    (work / "ca.pem").write_bytes(ca.cert_pem())
    for name, pair in pairs.items():
        (work / f"{name}.pem").write_bytes(pair.cert_pem())
        (work / f"{name}-key.pem").write_bytes(pair.key_pem())


def static_configs(work: Path, app_port: int, server_port: int, listen: int
                   ) -> tuple[str, str]:
    server = STATIC_COMMON.format(
        admin=free_port(), listen=server_port, to=app_port, hcm=_HCM, cluster_tls="",
        listener_tls=SERVER_TLS.format(tls=_TLS, dir=work))
    client = STATIC_COMMON.format(
        admin=free_port(), listen=listen, to=server_port, hcm=_HCM, listener_tls="",
        cluster_tls=CLIENT_TLS.format(tls=_TLS, dir=work))
    return server, client


def envoy_argv(config: Path) -> list[str]:
    return [str(envoy_binary()), "--config-path", str(config), "--concurrency", "1",
            "--log-level", "info", "--use-dynamic-base-id"]


@contextlib.asynccontextmanager
async def static_pair(work: Path, app_port: int) -> AsyncIterator[Target]:
    """The hand-written pair; its target is the client Envoy's listener."""
    work.mkdir()
    write_certs(work)
    listen = free_port()
    for name, text in zip(("server", "client"),
                          static_configs(work, app_port, free_port(), listen), strict=True):
        (work / f"{name}.yaml").write_text(text)
    async with process(envoy_argv(work / "server.yaml"), work / "server.log") as server, \
            process(envoy_argv(work / "client.yaml"), work / "client.log") as client:
        await eventually(lambda: answers(listen), timeout=30, what="the static Envoy pair")
        yield Target(listen, (server.pid, client.pid))


async def issue_token(cp: ZoneControlPlane, service: str, path: Path) -> Path:
    token, _ = await TokenAuthority(cp.manager, DATAPLANE, "default").issue(service, 3600)
    path.write_text(token)
    return path


def gossamer_command() -> str:
    return str(Path(sys.executable).with_name("gossamer"))


@contextlib.asynccontextmanager
async def sidecar(work: Path, cp: ZoneControlPlane, service: str, app: int,
                  outbound: int | None = None) -> AsyncIterator[int]:
    """``gossamer proxy run`` for one Dataplane of ``service``; SIGTERM drains it."""
    work.mkdir()
    dataplane = work / "dataplane.yaml"
    dataplane.write_text(DATAPLANE_YAML + (OUTBOUND if outbound else ""))
    assert cp.xds is not None
    args = [gossamer_command(), "proxy", "run", "--dataplane", str(dataplane),
            "--dataplane-var", f"service={service}",
            "--dataplane-var", f"inbound={free_port()}", "--dataplane-var", f"app={app}",
            "--cp", f"https://127.0.0.1:{cp.xds.port}",
            "--token-file", str(await issue_token(cp, service, work / "token")),
            "--cp-ca", str(cp.tls.ca_file), "--work-dir", str(work / "work"),
            "--admin-port", str(free_port()), "--concurrency", "1", "--drain-time", "1s"]
    if outbound:
        args += ["--dataplane-var", f"outbound={outbound}"]
    # Two sidecars on one host: each its own DNS port (where the agent runs a resolver).
    async with process(args, work / "agent.log",
                       env={"GOSSAMER_DNS_ADDR": "127.0.0.1:0"}) as agent:
        yield agent.pid


@contextlib.asynccontextmanager
async def gossamer_mesh(work: Path, app_port: int) -> AsyncIterator[Target]:
    """A standalone zone CP in this process and two real sidecars; the target is web's
    outbound listener."""
    cp = ZoneControlPlane(ZoneSettings(zone="lab", data_dir=work / "zone", store="sqlite",
                                       api_addr="127.0.0.1:0", xds_addr=f"127.0.0.1:{free_port()}"))
    await cp.start()
    try:
        outbound = free_port()
        async with sidecar(work / "backend", cp, "backend", app_port) as backend, \
                sidecar(work / "web", cp, "web", free_port(), outbound) as web:
            await eventually(lambda: answers(outbound), timeout=90,
                             what="web -> backend through both sidecars")
            yield Target(outbound, (backend, web))
    finally:
        await cp.stop()

