"""Envoy's bootstrap for a sidecar: a pure function from ``BootstrapParams`` to a dict.

The shape (YAML, as written to ``<work dir>/envoy.yaml`` with mode 0600, since it holds
the dataplane token):

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
  ``ADMIN_CLUSTER`` (Envoy's own admin address, for the MeshMetric stats listener).

Nothing here reads a file or a clock: the golden test pins the exact output.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gossamer.pki.files import write_secret
from proxy.names import ADMIN_CLUSTER, ADS_CLUSTER, SDS_CLUSTER

ADMIN_HOST = "127.0.0.1"

_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"


@dataclass(frozen=True)
class BootstrapParams:
    """Everything the bootstrap depends on.

    ``cp_host``/``cp_port``: the zone CP as given by ``--cp``; ``cp_ca_pem``: the CA that
    signed its serving certificate (``--cp-ca``); ``sds_socket``: the agent's SDS socket.
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


def ads_cluster(p: BootstrapParams) -> dict[str, Any]:
    ip = _is_ip(p.cp_host)
    tls: dict[str, Any] = {
        "@type": _TLS,
        "common_tls_context": {"validation_context": {
            "trusted_ca": {"inline_string": p.cp_ca_pem},
            "match_typed_subject_alt_names": [{
                "san_type": "IP_ADDRESS" if ip else "DNS",
                "matcher": {"exact": str(ipaddress.ip_address(p.cp_host)) if ip
                            else p.cp_host}}]}},
    }
    if not ip:
        tls["sni"] = p.cp_host  # an IP literal is not a valid SNI (RFC 6066)
    cluster: dict[str, Any] = {
        "name": ADS_CLUSTER,
        "type": "STATIC" if ip else "STRICT_DNS",
        "connect_timeout": "5s",
        "load_assignment": _endpoints(ADS_CLUSTER, _socket(p.cp_host, p.cp_port)),
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
            "load_assignment": _endpoints(SDS_CLUSTER, {"pipe": {"path": p.sds_socket}}),
            "typed_extension_protocol_options": _http2()}


def admin_cluster(p: BootstrapParams) -> dict[str, Any]:
    return {"name": ADMIN_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": _endpoints(ADMIN_CLUSTER, _socket(ADMIN_HOST, p.admin_port))}


def bootstrap(p: BootstrapParams) -> dict[str, Any]:
    """The bootstrap as a dict in Envoy's proto3 JSON/YAML shape."""
    def from_ads() -> dict[str, Any]:  # fresh dicts, so the YAML has no anchors
        return {"ads": {}, "resource_api_version": "V3"}

    return {
        "node": {"id": p.node_id, "cluster": p.service,
                 "locality": {"zone": p.zone},
                 "metadata": {"gossamer.io/mesh": p.mesh, "gossamer.io/dataplane": p.dataplane}},
        "admin": {"address": _socket(ADMIN_HOST, p.admin_port),
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
    }


def render(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)


def write(path: Path, doc: dict[str, Any]) -> None:
    """Write atomically with mode 0600: the file holds the dataplane token."""
    write_secret(path, render(doc).encode())
