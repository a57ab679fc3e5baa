"""Benchmark: calling a service outside the mesh through the sidecar, which originates
TLS (MeshExternalService), against the client speaking TLS to it directly.

    .venv/bin/python -m tests.bench.bench_external      # --seconds 5 --connections 8

As root. A network namespace of its own (a veth to the host, the VIP range routed to its
``lo``, an ``/etc/netns/<ns>/hosts`` naming the host's end ``httpbin.outside``) holds the
client and web's sidecar (VIP listeners, not transparent); the host holds nginx (one
worker, TLS 1.3, a certificate for ``httpbin.outside`` from a fresh CA, answering 200)
and a standalone zone CP in this process with a MeshExternalService ``httpbin`` naming
nginx by host name, TLS enabled and verified. Alternating, ``wrk`` (one thread,
``--connections`` kept-alive connections, ``--seconds`` each, twice) measures from the
namespace:

- ``direct``: ``https://httpbin.outside:<port>/``, wrk's own TLS to nginx (the
  reference: what the application would do without the mesh);
- ``sidecar``: ``http://<the external service's VIP>/``, plain HTTP to the sidecar, which
  sends it over its own pooled TLS connections to nginx.

Reported: requests per second and latency percentiles of each, and the ratios
sidecar/direct; note the load average, which other work on the machine inflates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gossamer.model.labels import EXTERNAL_SERVICE_LABEL
from gossamer.model.registry import parse_document
from gossamer.model.virtualip import VirtualIPSpec
from gossamer.pki.certs import new_leaf, new_root_ca
from tests.integration.agent_env import free_port
from tests.integration.test_vips_dns import VIP_LABELS, Namespace, Zone
from tests.waiting import eventually

NAME = "httpbin.outside"
NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen {ip}:{port} ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate {dir}/server.pem;
    ssl_certificate_key {dir}/server.key;
    keepalive_requests 1000000;
    location / {{ return 200 "outside"; }}
  }}
}}
"""


def sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {done.stderr}")
    return done.stdout


@contextlib.contextmanager
def namespace() -> Iterator[Namespace]:
    tag = secrets.token_hex(3)
    name, host_if, ns_if = f"extb-{tag}", f"extbh{tag}", f"extbn{tag}"
    octet = secrets.randbelow(250) + 1
    host_ip, ns_ip = f"10.219.{octet}.1", f"10.219.{octet}.2"
    etc = Path("/etc/netns") / name
    sh("ip", "netns", "add", name)
    try:
        for argv in (("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if),
                     ("ip", "link", "set", ns_if, "netns", name),
                     ("ip", "addr", "add", f"{host_ip}/30", "dev", host_if),
                     ("ip", "link", "set", host_if, "up"),
                     ("ip", "-n", name, "addr", "add", f"{ns_ip}/30", "dev", ns_if),
                     ("ip", "-n", name, "link", "set", ns_if, "up"),
                     ("ip", "-n", name, "link", "set", "lo", "up"),
                     ("ip", "-n", name, "route", "add", "local", "240.0.0.0/4", "dev", "lo")):
            sh(*argv)
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{host_ip} {NAME}\n")
        yield Namespace(name, host_ip, ns_ip)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


@contextlib.contextmanager
def nginx(directory: Path, ip: str) -> Iterator[tuple[int, bytes]]:
    """nginx with TLS for ``NAME``; yields its port and its CA's PEM."""
    now = dt.datetime.now(dt.UTC)
    ca = new_root_ca("bench outside CA", now, dt.timedelta(hours=2))
    leaf = new_leaf(ca, NAME, now, dt.timedelta(hours=2), dns=[NAME], client=False)
    (directory / "server.pem").write_bytes(leaf.cert_pem() + ca.cert_pem())
    (directory / "server.key").write_bytes(leaf.key_pem())
    (directory / "server.key").chmod(0o600)
    port = free_port()
    (directory / "nginx.conf").write_text(NGINX_CONF.format(dir=directory, ip=ip, port=port))
    proc = subprocess.Popen(["nginx", "-p", str(directory), "-c", str(directory / "nginx.conf"),
                             "-e", str(directory / "error.log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield port, ca.cert_pem()
    finally:
        proc.terminate()
        proc.wait()


@dataclass
class Result:
    rps: float
    latency_ms: dict[str, float]


def wrk(ns: Namespace, url: str, seconds: int, connections: int) -> Result:
    out = sh(*ns.exec, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None or "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk {url} did not run cleanly:\n{out}")
    latency = {p: _ms(v, u) for p, v, u in re.findall(r"\s(50|90|99)%\s+([\d.]+)(us|ms|s)\b",
                                                         out)}
    return Result(float(found.group(1)), latency)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def main(seconds: int, connections: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="gossamer-bench-external-"))
    directory.chmod(0o755)
    try:
        with namespace() as ns, nginx(directory, ns.host_ip) as (port, ca_pem):
            zone = Zone(directory / "zone", ns.host_ip, free_port())
            cp = await zone.start()
            try:
                await cp.manager.apply(parse_document({
                    "type": "MeshExternalService", "name": "httpbin", "mesh": "default",
                    "spec": {"match": {"port": 80, "protocol": "http"},
                             "endpoints": [{"address": NAME, "port": port}],
                             "tls": {"enabled": True, "verification": {
                                 "caCert": {"inline": ca_pem.decode()}}}}}))
                async with await zone.sidecar(directory / "web", "web-1", "web", ns.ns_ip,
                                              8080, "--dns-addr", "127.0.0.1:53",
                                              labels=VIP_LABELS, prefix=ns.exec):
                    vip = await eventually(lambda: _vip(zone), 30, "the external VIP")
                    url = f"http://{vip}/"
                    await eventually(lambda: _answers(ns, url), 60, "the sidecar to answer")
                    _report(ns, url, f"https://{NAME}:{port}/", seconds, connections)
            finally:
                await zone.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _vip(zone: Zone) -> str | None:
    assert zone.cp is not None
    return next((r.spec.ip for r in zone.cp.state.of_kind("VirtualIP", "default")
                 if isinstance(r.spec, VirtualIPSpec)
                 and r.labels.get(EXTERNAL_SERVICE_LABEL) == "httpbin"), None)


def _answers(ns: Namespace, url: str) -> bool:
    done = subprocess.run([*ns.exec, "curl", "-s", "-m", "2", url], capture_output=True,
                          text=True, check=False)
    return done.stdout == "outside"


def _report(ns: Namespace, sidecar_url: str, direct_url: str, seconds: int,
            connections: int) -> None:
    runs: dict[str, list[Result]] = {"direct": [], "sidecar": []}
    for _ in range(2):  # alternating, so that the machine's load falls on both alike
        runs["direct"].append(wrk(ns, direct_url, seconds, connections))
        runs["sidecar"].append(wrk(ns, sidecar_url, seconds, connections))
    best = {k: max(v, key=lambda r: r.rps) for k, v in runs.items()}
    print(f"load average {os.getloadavg()[0]:.2f}; wrk -t1 -c{connections} -d{seconds}s, "
          "best of 2 each")
    for name, result in best.items():
        lat = " ".join(f"p{p} {v:.2f} ms" for p, v in sorted(result.latency_ms.items()))
        print(f"{name:8} {result.rps:10,.0f} req/s  {lat}")
    d, s = best["direct"], best["sidecar"]
    ratios = " ".join(f"p{p} {s.latency_ms[p] / d.latency_ms[p]:.2f}x"
                      for p in sorted(d.latency_ms) if p in s.latency_ms and d.latency_ms[p])
    print(f"sidecar/direct: throughput {s.rps / d.rps:.2f}x, latency {ratios}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it creates a network namespace")
    asyncio.run(main(args.seconds, args.connections))
