"""Looking into a running environment with real clients: curl, dig and Envoy's admin API.

``call`` runs ``curl`` in a workload's namespace (so the name goes through its sidecar's
resolver and the request through its Envoy); ``dig`` asks a resolver there. ``trace``
makes one call and reads, from the Envoys' own upstream counters before and after it,
which hosts carried it: the client sidecar's cluster member (a local sidecar or another
zone's ingress) and, when that was an ingress, the sidecar the ingress passed it to.
``describe_path`` turns that into the lines the demo prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from deploy.local import netns
from deploy.local.app import parse_answer
from deploy.local.environment import Environment
from deploy.local.errors import CommandFailed
from deploy.local.topology import DNS_PORT, ENVOY_ADMIN_PORT, GLOBAL_IP, INGRESS_ADMIN_PORT
from proxy.context import sni
from proxy.redirect import defaults as redirect

MESH = "default"

# Clusters of the Envoys' own plumbing, not of traffic.
_PLUMBING = ("gossamer_", "admin", "prometheus:", "otlp:", "zipkin:", "datadog:")


@dataclass(frozen=True)
class Reply:
    status: int  # 0: no HTTP answer at all (see ``error``)
    body: str
    error: str = ""

    @property
    def served_by(self) -> tuple[str, str, str] | None:
        """(service, instance, zone) of the app that answered, if one did."""
        return parse_answer(self.body) if self.status == 200 else None

    @property
    def zone(self) -> str | None:
        return self.served_by[2] if self.served_by else None


def call(env: Environment, workload: str, url: str, timeout: float = 5.0) -> Reply:
    """``curl url`` from ``workload``'s namespace."""
    ns = env.topology.workload_ns(workload)
    done = netns.run_in(ns, ["curl", "-sS", "-m", str(timeout), "-w", "\n%{http_code}", url],
                        check=False, timeout=timeout + 5, env=env.env)
    body, _, code = done.stdout.rpartition("\n")
    status = int(code) if code.isdigit() else 0
    return Reply(status, body if status else "", done.stderr.strip())


def dig(env: Environment, workload: str, name: str, *, server: str = "127.0.0.1",
        port: int = DNS_PORT, qtype: str = "A", tcp: bool = False) -> tuple[str, list[str]]:
    """(rcode, answers) of ``dig`` in ``workload``'s namespace, like ("NOERROR", [ip])."""
    ns = env.topology.workload_ns(workload)
    argv = ["dig", f"@{server}", "-p", str(port), name, qtype, "+time=2", "+tries=2",
            "+noall", "+comments", "+answer", *(["+tcp"] if tcp else [])]
    out = netns.run_in(ns, argv, check=False, timeout=15, env=env.env).stdout
    rcode = "NO ANSWER"
    answers = []
    for line in out.splitlines():
        if "status:" in line:
            rcode = line.split("status:", 1)[1].split(",", 1)[0].strip()
        elif line and not line.startswith(";"):
            answers.append(line.split()[-1])
    return rcode, answers


def admin_get(env: Environment, ns: str, port: int, path: str) -> str:
    return netns.run_in(ns, ["curl", "-sS", "-m", "3", f"http://127.0.0.1:{port}{path}"],
                        timeout=10, env=env.env).stdout


HostCounts = dict[tuple[str, str], tuple[int, int]]
"""(cluster, "address:port") -> (requests + connections so far, connections open now)."""


def upstream_counts(clusters_json: str) -> HostCounts:
    """Per cluster member, its ``rq_total`` plus ``cx_total`` (TCP proxies have no
    requests) and its ``cx_active``, from ``/clusters?format=json``; plumbing clusters
    left out. (Envoy leaves zero values out of the JSON.)"""
    out: HostCounts = {}
    for cluster in json.loads(clusters_json).get("cluster_statuses", []):
        name = cluster.get("name", "")
        if name.startswith(_PLUMBING):
            continue
        for host in cluster.get("host_statuses", []):
            sock = host.get("address", {}).get("socket_address", {})
            address = f"{sock.get('address')}:{sock.get('port_value')}"
            stats = {s.get("name"): int(s.get("value", 0)) for s in host.get("stats", [])}
            out[(name, address)] = (stats.get("rq_total", 0) + stats.get("cx_total", 0),
                                    stats.get("cx_active", 0))
    return out


def moved(before: HostCounts, after: HostCounts, cluster: str | None = None
          ) -> list[tuple[str, str]]:
    """Members whose counters grew; with ``cluster``, also that cluster's members with an
    open connection (a pooled connection carries a new request without a new count)."""
    return sorted(k for k, (total, active) in after.items()
                  if total > before.get(k, (0, 0))[0] or (k[0] == cluster and active > 0))


@dataclass(frozen=True)
class Trace:
    reply: Reply
    vip: str
    client_hops: list[tuple[str, str]]  # (cluster, host) the client's Envoy used
    ingress_hops: dict[str, list[tuple[str, str]]]  # zone -> (cluster, host) of its ingress


def _counts(env: Environment, ns: str, port: int) -> HostCounts:
    try:
        return upstream_counts(admin_get(env, ns, port, "/clusters?format=json"))
    except (CommandFailed, ValueError):
        return {}


def trace(env: Environment, workload: str, service: str) -> Trace:
    t = env.topology
    client_ns = t.workload_ns(workload)
    ingress_ports = {z: (t.ingress_ns(z), INGRESS_ADMIN_PORT) for z in t.zones}
    before = _counts(env, client_ns, ENVOY_ADMIN_PORT)
    ingress_before = {z: _counts(env, *where) for z, where in ingress_ports.items()}
    _, answers = dig(env, workload, f"{service}.mesh")
    reply = call(env, workload, f"http://{service}.mesh/")
    after = _counts(env, client_ns, ENVOY_ADMIN_PORT)
    ingress_hops = {}
    for zone, where in ingress_ports.items():
        used = moved(ingress_before[zone], _counts(env, *where), sni(service, MESH))
        if used:
            ingress_hops[zone] = used
    return Trace(reply, answers[0] if answers else "?", moved(before, after), ingress_hops)


def box_of(env: Environment, address: str) -> str:
    """What sits at ``address`` (``ip`` or ``ip:port``), in words."""
    t = env.topology
    ip = address.rsplit(":", 1)[0]
    for zone in t.zones:
        if ip == t.ingress_ip(zone):
            return f"zone {zone}'s ingress"
        if ip == t.cp_ip(zone):
            return f"zone {zone}'s control plane"
    for w in t.workloads:
        if ip == t.workload_ip(w.name):
            return f"{w.name}'s sidecar in zone {w.zone}"
    return "an unknown host"


def describe_path(env: Environment, workload: str, service: str, tr: Trace) -> list[str]:
    t = env.topology
    w = t.workload(workload)
    lines = [f"{workload} (zone {w.zone}, {t.workload_ip(workload)}) runs "
             f"curl http://{service}.mesh/",
             f"  -> the lookup (to {GLOBAL_IP}:{DNS_PORT}, its resolv.conf's server) is "
             f"redirected by nftables to its sidecar's resolver (127.0.0.1:"
             f"{redirect.DNS_PORT}): {service}.mesh is VIP {tr.vip}",
             f"  -> the connection to {tr.vip}:80 is redirected to its sidecar's Envoy: the "
             f"capture listener (127.0.0.1:{redirect.OUTBOUND_PORT}) matches its original "
             f"destination"]
    for cluster, host in tr.client_hops:
        lines.append(f"  -> cluster {cluster!r} picked {host}: {box_of(env, host)} (mTLS "
                     f"from here on, SNI {sni(service, MESH)})")
        for zone, hops in tr.ingress_hops.items():
            if host.rsplit(":", 1)[0] == t.ingress_ip(zone):
                lines.append(f"  -> across the WAN: {t.router_wan_ip(w.zone)} (zone "
                             f"{w.zone}'s router) -> {t.router_wan_ip(zone)} (zone {zone}'s)")
                lines += [f"  -> the ingress read the SNI only and passed the TLS bytes to "
                          f"{h}: {box_of(env, h)}" for _, h in hops]
    if tr.reply.served_by:
        _, instance, zone = tr.reply.served_by
        lines.append(f"  -> {instance}'s Envoy ended the mTLS and called its app on "
                     f"127.0.0.1, which answered (zone {zone})")
    return lines
