"""Benchmark: the data path through two Gossamer sidecars against a hand-written Envoy pair.

Run ``.venv/bin/python -m tests.bench.bench_dataplane`` (as root it installs ``wrk`` and
``nginx`` from Debian when missing). One run measures four paths to the same nginx
(one worker, a fixed 2-byte body, no access log) with the same ``wrk --latency`` settings:

- ``direct``: wrk → nginx;
- ``static``: wrk → client Envoy → mTLS → server Envoy → nginx, both Envoys from the
  hand-written YAML below (``--concurrency 1``; certificates from ``gossamer.pki.certs``,
  the same ECDSA P-256 keys and SPIFFE SANs the mesh uses, the client verifying the
  server's SAN);
- ``gossamer``: wrk → web's sidecar (explicit outbound) → mTLS → backend's sidecar
  (inbound, RBAC from the default mesh's allow-all permission) → nginx, programmed by a
  standalone zone CP running in this process, each sidecar a real ``gossamer proxy run``
  with ``--concurrency 1``.

- ``static again``: a second, identical hand-written pair. It is the control: how far
  apart two identical configurations measure on this machine in this run (an A/A
  test), which is the resolution of the gossamer/static ratio.

Every path is warmed up, then all are measured in turn, ``--rounds`` times interleaved
(each round starting with the next path) so that a burst of load from elsewhere on the
machine hits all alike; the table gives each path's median round and the ratios
gossamer/static, gossamer/direct and static again/static. A round with a socket error
or a non-2xx answer fails the run.

Besides wrk's numbers, each round reads the CPU time of the path's Envoys from /proc
(every thread, before and after) and divides it by the requests wrk completed: CPU per
request is what a proxy's configuration costs, and unlike req/s it barely moves when
other work on the machine takes cores away from the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
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


# -- CPU accounting from /proc ---------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """``(comm, ppid, cpu seconds of all its threads)`` of ``pid``, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def envoy_cpu(roots: tuple[int, ...]) -> float:
    """CPU seconds used so far by the Envoys among ``roots`` and their descendants."""
    stats = {int(e.name): _stat(int(e.name)) for e in Path("/proc").iterdir()
             if e.name.isdigit()}
    family, grew = set(roots), True
    while grew:
        more = {pid for pid, st in stats.items() if st and st[1] in family} - family
        family |= more
        grew = bool(more)
    return sum(st[2] for pid, st in stats.items()
               if pid in family and st is not None and st[0] == "envoy")


# -- tools -----------------------------------------------------------------------------------

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


# -- the three paths -------------------------------------------------------------------------

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


# -- wrk -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    envoy_cpu_us: float = 0.0  # per request, every Envoy on the path together


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(text: str) -> tuple[Result, int]:
    """``wrk --latency`` output → requests/s, p50/p99 in ms, and the request count;
    errors raise."""
    for marker in ("Socket errors", "Non-2xx or 3xx responses"):
        if marker in text:
            raise RuntimeError(f"wrk reported {marker.lower()}:\n{text}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    count = re.search(r"(\d+) requests in", text)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if rps is None or count is None or p50 is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    return Result(float(rps.group(1)), float(p50.group(1)) * _UNITS[p50.group(2)],
                  float(p99.group(1)) * _UNITS[p99.group(2)]), int(count.group(1))


@dataclass(frozen=True)
class Settings:
    threads: int = 1
    connections: int = 16
    seconds: int = 10
    warmup: int = 3
    rounds: int = 5

    def wrk_args(self, seconds: int) -> list[str]:
        return ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{seconds}s",
                "--latency"]


async def wrk(target: Target, s: Settings, seconds: int) -> Result:
    before = envoy_cpu(target.pids)
    proc = await asyncio.create_subprocess_exec(
        *s.wrk_args(seconds), f"http://127.0.0.1:{target.port}/",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    used = envoy_cpu(target.pids) - before
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{out.decode()}")
    result, count = parse_wrk(out.decode())
    return replace(result, envoy_cpu_us=used * 1e6 / max(1, count))


async def measure(targets: dict[str, Target], s: Settings,
                  report: Callable[[str], None]) -> dict[str, list[Result]]:
    for target in targets.values():
        await wrk(target, s, s.warmup)
    results: dict[str, list[Result]] = {name: [] for name in targets}
    names = list(targets)
    for i in range(s.rounds):
        # Each round starts with the next path, so none is always measured first.
        for name in names[i % len(names):] + names[:i % len(names)]:
            r = await wrk(targets[name], s, s.seconds)
            results[name].append(r)
            report(f"round {i + 1} {name}: {r.rps:,.0f} req/s, p50 {r.p50_ms:.3f} ms, "
                   f"p99 {r.p99_ms:.3f} ms, Envoy CPU {r.envoy_cpu_us:.1f} us/req")
    return results


def median_round(results: list[Result]) -> Result:
    return Result(*(statistics.median(getattr(r, f) for r in results)
                    for f in ("rps", "p50_ms", "p99_ms", "envoy_cpu_us")))


def _cpu(us: float) -> str:
    return f"{us:.1f}" if us else "n/a"


def table(results: dict[str, list[Result]]) -> str:
    m = {name: median_round(rs) for name, rs in results.items()}
    lines = ["| path | req/s | p50 ms | p99 ms | Envoy CPU µs/req |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | "
              f"{_cpu(r.envoy_cpu_us)} |" for name, r in m.items()]
    lines += ["", "| ratio | req/s | p50 | p99 | Envoy CPU/req |", "|---|---:|---:|---:|---:|"]
    for a, b in (("gossamer", "static"), ("gossamer", "direct"), ("static again", "static")):
        x, r = m[a], m[b]
        cpu = f"{x.envoy_cpu_us / r.envoy_cpu_us:.2f}" if r.envoy_cpu_us else "n/a"
        lines.append(f"| {a} / {b} | {x.rps / r.rps:.2f} | {x.p50_ms / r.p50_ms:.2f} | "
                     f"{x.p99_ms / r.p99_ms:.2f} | {cpu} |")
    return "\n".join(lines)


def machine() -> str:
    def first_line(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).strip().splitlines()[0]

    envoy = first_line([str(envoy_binary()), "--version"]).split("version:")[-1].strip()
    wrk_version = first_line(["wrk", "--version"]).split(" Copyright")[0]
    return (f"nproc {os.cpu_count()}, Python {sys.version.split()[0]}, Envoy {envoy}, "
            f"{first_line([nginx_binary(), '-v'])}, {wrk_version}")


# -- the run ---------------------------------------------------------------------------------

async def main(s: Settings, keep: Path | None = None) -> None:
    logging.basicConfig(level=logging.ERROR)
    ensure_tools()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-dp-") as tmp:
        root = keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        async with nginx(root / "nginx") as app, \
                static_pair(root / "static", app.port) as static, \
                gossamer_mesh(root / "gossamer", app.port) as mesh, \
                static_pair(root / "static-again", app.port) as control:
            targets = {"direct": app, "static": static, "gossamer": mesh,
                       "static again": control}
            results = await measure(targets, s,
                                    lambda line: print(line, file=sys.stderr, flush=True))
    print(f"\nwrk -t{s.threads} -c{s.connections} -d{s.seconds}s --latency, "
          f"median of {s.rounds} interleaved rounds after a {s.warmup}s warm-up\n")
    print(table(results))
    print(f"\n{machine()}; load average {load_before} before, "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} after")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=Settings.threads)
    parser.add_argument("--connections", type=int, default=Settings.connections)
    parser.add_argument("--seconds", type=int, default=Settings.seconds)
    parser.add_argument("--warmup", type=int, default=Settings.warmup)
    parser.add_argument("--rounds", type=int, default=Settings.rounds)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="work in DIR (new) and keep it: configs, logs, Envoy work dirs")
    a = parser.parse_args()
    asyncio.run(main(Settings(a.threads, a.connections, a.seconds, a.warmup, a.rounds),
                     a.keep))
