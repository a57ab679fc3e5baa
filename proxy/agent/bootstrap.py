"""Envoy's bootstrap for a sidecar: a pure function from ``BootstrapParams`` to a dict.

The shape (as written to ``<work dir>/envoy.yaml`` with mode 0600, since it holds the
dataplane token; written as JSON, which Envoy's YAML parser reads as it is, so that the
agent's runtime loads no YAML library):

* ``node``: the ``node_id`` the zone CP gave in ``Registered``, ``cluster`` = the
  Dataplane's service, ``locality.zone`` = its zone, and the mesh and Dataplane name as
  metadata;
* ``admin`` on ``127.0.0.1:<admin port>``, its access log to ``/dev/null``;
* ``dynamic_resources``: delta ADS (``DELTA_GRPC``, v3) to ``ADS_CLUSTER`` with the token
  as ``authorization: Bearer`` initial metadata and the node sent on the first message
  only; CDS and LDS from ADS (the routes, endpoints and secrets they reference say where
  they come from themselves);
* three static clusters: ``ADS_CLUSTER`` (the zone CP over HTTP/2 and TLS: its CA as the
  only trusted CA, its host name as SNI and as the required SAN, HTTP/2 keepalives so a
  dead control plane is noticed), ``SDS_CLUSTER`` (the agent's unix socket, HTTP/2) and
  ``ADMIN_CLUSTER`` (Envoy's own admin address, for the MeshMetric stats listener);
* what keeps Envoy lean (``EnvoyLimits``): the stats the mesh reads and no others
  (``proxy.stats_matcher``) with the cluster traffic stats created on first use, and the
  overload manager: a fixed heap budget (shrink the heap at 90 %, stop accepting
  requests at 95 %) and a limit on downstream connections, which the admin listener
  ignores so that the agent can always drain Envoy and ``inspect`` can always read it.

Nothing here reads a file or a clock (``limits_from_environ`` reads the environment it
is given): the golden test pins the exact output.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gossamer.pki.files import write_secret
from proxy.agent.errors import InputError
from proxy.limits import BUFFER_LIMIT
from proxy.names import ADMIN_CLUSTER, ADS_CLUSTER, SDS_CLUSTER
from proxy.stats_matcher import stats_matcher

ADMIN_HOST = "127.0.0.1"

_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
_FIXED_HEAP = "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig"
_CONNECTIONS = ("type.googleapis.com/envoy.extensions.resource_monitors"
                ".downstream_connections.v3.DownstreamConnectionsConfig")
HEAP_MONITOR = "envoy.resource_monitors.fixed_heap"
CONNECTIONS_MONITOR = "envoy.resource_monitors.global_downstream_max_connections"
# Fractions of the heap budget at which Envoy returns free memory to the system, then
# answers new requests 503 until it is below again.
SHRINK_HEAP_AT = 0.90
STOP_ACCEPTING_AT = 0.95
MIN_HEAP = 64 << 20  # below this an idle sidecar would already refuse requests
MAX_HEAP = 1 << 40
MAX_CONNECTIONS = 1_000_000
# The environment variables a platform engineer overrides ``EnvoyLimits`` with.
STATS_ENV = "GOSSAMER_ENVOY_STATS"
HEAP_ENV = "GOSSAMER_ENVOY_MAX_HEAP"
CONNECTIONS_ENV = "GOSSAMER_ENVOY_MAX_CONNECTIONS"
_UNITS = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


@dataclass(frozen=True)
class EnvoyLimits:
    """How lean Envoy runs; the defaults suit a sidecar, each can be overridden
    (``limits_from_environ``).

    ``mesh_stats``: keep only the stats the mesh reads (``proxy.stats_matcher``) and
    create a cluster's traffic stats when it first carries traffic; false keeps every
    stat Envoy has. ``max_heap_bytes``: the heap budget of the overload manager (1 GiB:
    about ten times the memory of a sidecar's Envoy with a thousand services, so it acts
    on a runaway only; set it below the memory limit of the sidecar's cgroup where it has
    one). ``max_connections``: downstream connections Envoy accepts at once, beyond
    which it closes new ones (Envoy warns at start when there is no limit). ``None``
    turns either off.
    """

    mesh_stats: bool = True
    max_heap_bytes: int | None = 1 << 30
    max_connections: int | None = 10_000

    def __post_init__(self) -> None:
        problem = _heap_problem(self.max_heap_bytes) or _connections_problem(
            self.max_connections)
        if problem:
            raise ValueError(problem)


def _heap_problem(value: int | None) -> str | None:
    if value is None or MIN_HEAP <= value <= MAX_HEAP:
        return None
    return (f"the heap budget must be between {MIN_HEAP >> 20} MiB and {MAX_HEAP >> 30} GiB, "
            f"not {value} bytes")


def _connections_problem(value: int | None) -> str | None:
    if value is None or 1 <= value <= MAX_CONNECTIONS:
        return None
    return f"the connection limit must be between 1 and {MAX_CONNECTIONS}, not {value}"


def _number(variable: str, text: str, units: dict[str, int]) -> int | None:
    """``off`` (None), or a whole number with one of ``units``' suffixes."""
    value = text.strip()
    if value.lower() == "off":
        return None
    suffix = next((u for u in units if u and value.endswith(u)), "")
    digits = value[:len(value) - len(suffix)]
    if not digits.isdigit() or len(digits) > 15:
        accepted = ", ".join(f"N{u}" for u in units)
        raise InputError(f"{variable}={text!r}: expected off or a whole number "
                         f"({accepted})")
    return int(digits) * units[suffix]


def limits_from_environ(env: Mapping[str, str] | None = None) -> EnvoyLimits:
    """``EnvoyLimits`` with the overrides of ``env`` (default: this process's): a bad
    value is an ``InputError`` naming the variable."""
    env = os.environ if env is None else env
    stats = env.get(STATS_ENV, "mesh").strip().lower()
    if stats not in ("mesh", "all"):
        raise InputError(f"{STATS_ENV}={env[STATS_ENV]!r}: expected mesh (the stats the "
                         "mesh reads) or all (every stat Envoy has)")
    defaults = EnvoyLimits()
    heap = defaults.max_heap_bytes
    if HEAP_ENV in env:
        heap = _number(HEAP_ENV, env[HEAP_ENV], _UNITS)
        if problem := _heap_problem(heap):
            raise InputError(f"{HEAP_ENV}: {problem}")
    connections = defaults.max_connections
    if CONNECTIONS_ENV in env:
        connections = _number(CONNECTIONS_ENV, env[CONNECTIONS_ENV], {"": 1})
        if problem := _connections_problem(connections):
            raise InputError(f"{CONNECTIONS_ENV}: {problem}")
    return EnvoyLimits(mesh_stats=stats == "mesh", max_heap_bytes=heap,
                       max_connections=connections)


@dataclass(frozen=True)
class BootstrapParams:
    """Everything the bootstrap depends on.

    ``cp_host``/``cp_port``: the zone CP as given by ``--cp``; ``cp_alternates``: its
    other addresses (replicas), as (host, port); ``cp_ca_pem``: the CA that
    signed its serving certificate (``--cp-ca``); ``sds_socket``: the agent's SDS socket.
    ``limits``: by default the defaults with this process's ``GOSSAMER_ENVOY_*``
    overrides, so that every agent that writes a bootstrap honours them (a bad value is
    an ``InputError`` when the bootstrap is first written, before Envoy starts).
    """

    node_id: str
    mesh: str
    dataplane: str
    zone: str
    service: str
    cp_host: str
    cp_port: int
    cp_ca_pem: str
    token: str
    sds_socket: str
    admin_port: int = 9901
    limits: EnvoyLimits = field(default_factory=lambda: limits_from_environ())
    cp_alternates: tuple[tuple[str, int], ...] = ()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _endpoints(name: str, address: dict[str, Any]) -> dict[str, Any]:
    return {"cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}]}


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _http2(keepalive: bool = False) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if keepalive:
        options["connection_keepalive"] = {"interval": "30s", "timeout": "10s"}
    return {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": _HTTP_OPTIONS, "explicit_http_config": {"http2_protocol_options": options}}}


def _san(host: str) -> dict[str, Any]:
    if _is_ip(host):
        return {"san_type": "IP_ADDRESS", "matcher": {"exact": str(ipaddress.ip_address(host))}}
    return {"san_type": "DNS", "matcher": {"exact": host}}


def ads_cluster(p: BootstrapParams) -> dict[str, Any]:
    """The zone CP's xDS: one endpoint per ``--cp`` address (Envoy moves its ADS stream to
    another when one fails); a certificate naming any of them verifies."""
    addresses = [(p.cp_host, p.cp_port), *p.cp_alternates]
    ip = all(_is_ip(host) for host, _ in addresses)
    tls: dict[str, Any] = {
        "@type": _TLS,
        "common_tls_context": {"validation_context": {
            "trusted_ca": {"inline_string": p.cp_ca_pem},
            "match_typed_subject_alt_names": [_san(h) for h in dict.fromkeys(
                host for host, _ in addresses)]}},
    }
    if not _is_ip(p.cp_host):
        tls["sni"] = p.cp_host  # an IP literal is not a valid SNI (RFC 6066)
    cluster: dict[str, Any] = {
        "name": ADS_CLUSTER,
        "type": "STATIC" if ip else "STRICT_DNS",
        "connect_timeout": "5s",
        "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
        "load_assignment": {"cluster_name": ADS_CLUSTER, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": _socket(host, port)}} for host, port in addresses]}]},
        "typed_extension_protocol_options": _http2(keepalive=True),
        "upstream_connection_options": {"tcp_keepalive": {
            "keepalive_time": 30, "keepalive_interval": 10, "keepalive_probes": 3}},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
    }
    if not ip:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def sds_cluster(p: BootstrapParams) -> dict[str, Any]:
    return {"name": SDS_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
            "load_assignment": _endpoints(SDS_CLUSTER, {"pipe": {"path": p.sds_socket}}),
            "typed_extension_protocol_options": _http2()}


def admin_cluster(p: BootstrapParams) -> dict[str, Any]:
    return {"name": ADMIN_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
            "load_assignment": _endpoints(ADMIN_CLUSTER, _socket(ADMIN_HOST, p.admin_port))}


def _trigger(monitor: str, threshold: float) -> dict[str, Any]:
    return {"name": monitor, "threshold": {"value": threshold}}


def overload_manager(limits: EnvoyLimits) -> dict[str, Any] | None:
    """The overload manager for ``limits``' heap budget and connection limit, if any."""
    monitors: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    if limits.max_heap_bytes is not None:
        monitors.append({"name": HEAP_MONITOR, "typed_config": {
            "@type": _FIXED_HEAP, "max_heap_size_bytes": limits.max_heap_bytes}})
        actions += [
            {"name": "envoy.overload_actions.shrink_heap",
             "triggers": [_trigger(HEAP_MONITOR, SHRINK_HEAP_AT)]},
            {"name": "envoy.overload_actions.stop_accepting_requests",
             "triggers": [_trigger(HEAP_MONITOR, STOP_ACCEPTING_AT)]}]
    if limits.max_connections is not None:
        monitors.append({"name": CONNECTIONS_MONITOR, "typed_config": {
            "@type": _CONNECTIONS,
            "max_active_downstream_connections": limits.max_connections}})
    if not monitors:
        return None
    return {"refresh_interval": "0.25s", "resource_monitors": monitors, "actions": actions}


def lean_sections(limits: EnvoyLimits) -> dict[str, Any]:
    """The bootstrap's top-level fields that keep Envoy lean (``EnvoyLimits``)."""
    out: dict[str, Any] = {}
    if limits.mesh_stats:
        out["stats_config"] = {"stats_matcher": stats_matcher()}
        out["deferred_stat_options"] = {"enable_deferred_creation_stats": True}
    overload = overload_manager(limits)
    if overload is not None:
        out["overload_manager"] = overload
    return out


def bootstrap(p: BootstrapParams) -> dict[str, Any]:
    """The bootstrap as a dict in Envoy's proto3 JSON/YAML shape."""
    def from_ads() -> dict[str, Any]:  # fresh dicts, so the YAML has no anchors
        return {"ads": {}, "resource_api_version": "V3"}

    return {
        "node": {"id": p.node_id, "cluster": p.service,
                 "locality": {"zone": p.zone},
                 "metadata": {"gossamer.io/mesh": p.mesh, "gossamer.io/dataplane": p.dataplane}},
        "admin": {"address": _socket(ADMIN_HOST, p.admin_port),
                  "ignore_global_conn_limit": True,
                  "access_log": [{"name": "envoy.access_loggers.file",
                                  "typed_config": {"@type": _FILE_LOG, "path": "/dev/null"}}]},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{
                    "envoy_grpc": {"cluster_name": ADS_CLUSTER},
                    "initial_metadata": [{"key": "authorization",
                                          "value": f"Bearer {p.token}"}]}],
            },
            "cds_config": from_ads(),
            "lds_config": from_ads(),
        },
        "static_resources": {"clusters": [ads_cluster(p), sds_cluster(p), admin_cluster(p)]},
        **lean_sections(p.limits),
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


def write(path: Path, doc: dict[str, Any]) -> None:
    """Write atomically with mode 0600: the file holds the dataplane token."""
    write_secret(path, render(doc).encode())
