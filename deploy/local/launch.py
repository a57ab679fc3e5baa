"""The command lines of an environment's processes: pure, from the topology and the layout.

``Layout`` says where each process keeps its state under the environment's directory;
``commands(topology, layout, options)`` returns every ``Command`` (name, namespace, argv)
in start order. ``Environment`` starts them; tests read them to restart one as it was.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from deploy.local.topology import (
    APP_PORT,
    DNS_PORT,
    EGRESS_ADMIN_PORT,
    EGRESS_PORT,
    ENVOY_ADMIN_PORT,
    GLOBAL_API_PORT,
    GLOBAL_IP,
    GLOBAL_SYNC_PORT,
    INBOUND_PORT,
    INGRESS_ADMIN_PORT,
    INGRESS_PORT,
    XDS_PORT,
    ZONE_API_PORT,
    Topology,
    Workload,
)
from proxy.redirect import defaults as redirect

GOSSAMER = str(Path(sys.executable).parent / "gossamer")

# Sidecars are transparent: the zone CP gives them capture listeners, not VIP listeners.
DATAPLANE = """\
type: Dataplane
mesh: default
name: {name}
networking:
  address: {address}
  inbound:
  - port: {inbound}
    servicePort: {app}
    tags: {{gossamer.io/service: {service}, gossamer.io/protocol: http}}
"""


OUTBOUND = """\
  outbound:
"""
OUTBOUND_ITEM = """\
  - port: {port}
    address: 127.0.0.1
    tags: {{gossamer.io/service: {service}}}
"""
# What already listens on a workload's loopback: its app, its Envoy's admin, inbound and
# capture listeners, its resolver. An explicit outbound there could never bind.
TAKEN_PORTS = frozenset({APP_PORT, INBOUND_PORT, ENVOY_ADMIN_PORT, redirect.OUTBOUND_PORT,
                         redirect.INBOUND_PORT, redirect.DNS_PORT})


@dataclass(frozen=True)
class ExplicitOutbound:
    """An explicit ``outbound`` in ``workload``'s Dataplane: ``service`` on
    ``127.0.0.1:port``. The redirect lets loopback traffic pass, so this is the path
    without the transparent proxy, beside the captured one, in the same sidecar (the
    cross-zone bench compares the two)."""

    workload: str
    service: str
    port: int

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"explicit outbound {self.service} of {self.workload}: port "
                             f"{self.port} is not in 1-65535")
        if self.port in TAKEN_PORTS:
            raise ValueError(f"explicit outbound {self.service} of {self.workload}: port "
                             f"{self.port} is taken on the workload's loopback (by one of "
                             f"{sorted(TAKEN_PORTS)})")


@dataclass(frozen=True)
class Options:
    """How the processes run. Tests shorten the heartbeats so a dead peer is noticed fast;
    ``outbounds`` adds explicit outbounds to the workloads' Dataplanes."""

    heartbeat_interval: str = "5s"
    heartbeat_timeout: str = "15s"
    log_level: str = "info"
    envoy_log_level: str = "warning"
    ready_timeout: float = 60.0
    outbounds: tuple[ExplicitOutbound, ...] = ()


def sidecars_dir(prefix: str) -> Path:
    """Where the sidecars' files live: a transparent sidecar runs as the ``gossamer`` user,
    which must read them, and a state directory may sit under one only root can enter
    (pytest's). Named with the prefix, so cleanup finds it."""
    return Path("/tmp") / f"{prefix}sidecars"


@dataclass(frozen=True)
class Layout:
    """Where things live under the environment's state directory (the sidecars' files
    under ``sidecars``, when given: see ``sidecars_dir``)."""

    root: Path
    sidecars: Path | None = None

    @property
    def global_dir(self) -> Path:
        return self.root / "global"

    def cp_dir(self, zone: str) -> Path:
        return self.root / f"{zone}-cp"

    def cp_ca(self, zone: str) -> Path:
        return self.cp_dir(zone) / "tls" / "ca.pem"

    def zone_token(self, zone: str, scope: str) -> Path:
        return self.root / "tokens" / f"{zone}-{scope}.token"

    def ingress_dir(self, zone: str) -> Path:
        return self.root / f"{zone}-ingress"

    def egress_dir(self, zone: str) -> Path:
        return self.root / f"{zone}-egress"

    def workload_dir(self, name: str) -> Path:
        return (self.sidecars or self.root) / name

    def dataplane_token(self, name: str) -> Path:
        return self.workload_dir(name) / "token"

    def sidecar_ca(self, name: str) -> Path:
        """The workload's copy of its zone CP's CA certificate, readable by the sidecar."""
        return self.workload_dir(name) / "ca.pem"


@dataclass(frozen=True)
class Command:
    """One process: its name (``global``, ``east-cp``, ``web-1-sidecar``...), namespace and
    command line; the URL (in its namespace) that answers 2xx once it is ready; where its
    Envoy logs, for an agent that runs one."""

    name: str
    ns: str
    argv: tuple[str, ...]
    ready_url: str | None = None
    envoy_log: Path | None = None


def _local(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def _common(o: Options) -> tuple[str, ...]:
    return ("--heartbeat-interval", o.heartbeat_interval,
            "--heartbeat-timeout", o.heartbeat_timeout, "--log-level", o.log_level)


def global_commands(t: Topology, layout: Layout, o: Options) -> list[Command]:
    return [
        Command("upstream-dns", t.global_ns, (
            sys.executable, "-m", "deploy.local.upstream_dns",
            "--listen", f"{GLOBAL_IP}:{DNS_PORT}")),
        Command("global", t.global_ns, (
            GOSSAMER, "global", "run", "--data-dir", str(layout.global_dir),
            "--api-addr", f"127.0.0.1:{GLOBAL_API_PORT}",
            "--sync-addr", f"{GLOBAL_IP}:{GLOBAL_SYNC_PORT}", "--tls-host", GLOBAL_IP,
            "--store", "sqlite", *_common(o)), _local(GLOBAL_API_PORT, "/readyz")),
    ]


def zone_command(t: Topology, layout: Layout, o: Options, zone: str) -> Command:
    return Command(f"{zone}-cp", t.cp_ns(zone), (
        GOSSAMER, "zone", "run", "--zone", zone, "--data-dir", str(layout.cp_dir(zone)),
        "--api-addr", f"127.0.0.1:{ZONE_API_PORT}", "--xds-addr", f"0.0.0.0:{XDS_PORT}",
        "--store", "sqlite", "--global", t.global_sync_url,
        "--token-file", str(layout.zone_token(zone, "cp")),
        "--global-ca", str(layout.global_dir / "tls" / "ca.pem"), *_common(o)),
        _local(ZONE_API_PORT, "/readyz"))


def ingress_command(t: Topology, layout: Layout, o: Options, zone: str) -> Command:
    address = f"{t.ingress_ip(zone)}:{INGRESS_PORT}"
    return Command(f"{zone}-ingress", t.ingress_ns(zone), (
        GOSSAMER, "ingress", "run", "--name", f"{zone}-ingress",
        "--cp", t.cp_url(zone), "--cp-ca", str(layout.cp_ca(zone)),
        "--token-file", str(layout.zone_token(zone, "ingress")),
        "--listen", address, "--advertise", address,
        "--work-dir", str(layout.ingress_dir(zone)), "--admin-port", str(INGRESS_ADMIN_PORT),
        "--drain-time", "1s", "--envoy-log-level", o.envoy_log_level,
        "--log-level", o.log_level), _local(INGRESS_ADMIN_PORT, "/ready"),
        layout.ingress_dir(zone) / "envoy.log")


def egress_command(t: Topology, layout: Layout, o: Options, zone: str) -> Command:
    address = f"{t.egress_ip(zone)}:{EGRESS_PORT}"
    return Command(f"{zone}-egress", t.egress_ns(zone), (
        GOSSAMER, "egress", "run", "--name", f"{zone}-egress",
        "--cp", t.cp_url(zone), "--cp-ca", str(layout.cp_ca(zone)),
        "--token-file", str(layout.zone_token(zone, "egress")),
        "--listen", address, "--advertise", address,
        "--work-dir", str(layout.egress_dir(zone)), "--admin-port", str(EGRESS_ADMIN_PORT),
        "--drain-time", "1s", "--envoy-log-level", o.envoy_log_level,
        "--log-level", o.log_level), _local(EGRESS_ADMIN_PORT, "/ready"),
        layout.egress_dir(zone) / "envoy.log")


def explicit_outbounds(t: Topology, o: Options, w: Workload) -> list[ExplicitOutbound]:
    """``w``'s explicit outbounds in ``o``; ``ValueError`` for one naming a workload the
    topology lacks, or two of a workload on one port (Envoy could bind neither)."""
    names = {x.name for x in t.workloads}
    for ob in o.outbounds:
        if ob.workload not in names:
            raise ValueError(f"explicit outbound {ob.service} of {ob.workload}: no workload "
                             f"{ob.workload!r}; there are {sorted(names)}")
    mine = [ob for ob in o.outbounds if ob.workload == w.name]
    ports = [ob.port for ob in mine]
    if len(set(ports)) != len(ports):
        raise ValueError(f"explicit outbounds of {w.name}: a port is used twice in {ports}")
    return mine


def dataplane_yaml(t: Topology, w: Workload, o: Options | None = None) -> str:
    """``w``'s Dataplane: one inbound for its app, and the explicit outbounds ``o`` gives it."""
    text = DATAPLANE.format(name=w.name, address=t.workload_ip(w.name), inbound=INBOUND_PORT,
                            app=APP_PORT, service=w.service)
    outbounds = explicit_outbounds(t, o or Options(), w)
    if outbounds:
        text += OUTBOUND + "".join(OUTBOUND_ITEM.format(port=ob.port, service=ob.service)
                                   for ob in outbounds)
    return text


def redirect_argv() -> list[str]:
    """Run once in a workload's namespace before its sidecar: the transparent proxy's
    nftables table (and the ``gossamer`` user the sidecar runs as), as a user would."""
    return [GOSSAMER, "proxy", "redirect", "install"]


def workload_commands(t: Topology, layout: Layout, o: Options, w: Workload) -> list[Command]:
    """The app, then its sidecar (reading ``<workload dir>/dataplane.yaml``) on the
    transparent proxy: started as root, it runs itself as ``gossamer``, the user the
    redirect lets pass; its resolver is on the default 127.0.0.1:15053, where the redirect
    sends the workload's DNS."""
    ns, directory = t.workload_ns(w.name), layout.workload_dir(w.name)
    return [
        Command(f"{w.name}-app", ns, (
            sys.executable, "-m", "deploy.local.app", "--service", w.service,
            "--instance", w.name, "--zone", w.zone, "--port", str(APP_PORT)),
            _local(APP_PORT, "/")),
        Command(f"{w.name}-sidecar", ns, (
            GOSSAMER, "proxy", "run", "--transparent",
            "--dataplane", str(directory / "dataplane.yaml"),
            "--cp", t.cp_url(w.zone), "--cp-ca", str(layout.sidecar_ca(w.name)),
            "--token-file", str(layout.dataplane_token(w.name)),
            "--work-dir", str(directory / "proxy"), "--admin-port", str(ENVOY_ADMIN_PORT),
            "--drain-time", "1s",
            "--envoy-log-level", o.envoy_log_level, "--log-level", o.log_level),
            _local(ENVOY_ADMIN_PORT, "/ready"), directory / "proxy" / "envoy.log"),
    ]
