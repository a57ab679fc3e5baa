"""Cross-zone calls by mesh DNS name, in network namespaces (``deploy.local``).

One environment for the module: a global, zones east and west (each a network of its
own behind a routed WAN) with an ingress each, ``backend-1`` in east, ``web-1`` and
``web-2`` in west. Real clients in web's namespaces: ``curl http://backend.mesh/`` (the
name through the sidecar's resolver on port 53, the request through its Envoy's VIP
listener, east's ingress and backend's sidecar) and ``dig``.

- the call reaches backend in east, through east's ingress (the Envoys' counters say so);
- ``dig @127.0.0.1 -p 53 backend.mesh`` answers west's VIP for backend, an unknown
  ``.mesh`` name is NXDOMAIN, and ``example.org`` is forwarded to the environment's
  upstream DNS;
- a MeshTrafficPermission applied at the global denying web refuses the call (403 from
  backend's sidecar in east), and allowing it restores it;
- the ingress cannot read the traffic: no private key in its files, its Envoy has no
  TLS context and no secret and only proxies TCP, and a capture on the WAN of web-2's
  first calls (on east's port of the WAN bridge) holds TLS records only: the SNI in the
  ClientHello, never the HTTP.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.local import netns, probes
from deploy.local.environment import Environment
from deploy.local.network import wan_port
from deploy.local.topology import INGRESS_ADMIN_PORT, INGRESS_PORT, Topology, Workload
from deploy.local.upstream_dns import EXAMPLE_ORG
from tests.e2e import wire
from tests.e2e.support import all_from, deny, prefix, running, status_of
from tests.waiting import eventually_sync

TOPOLOGY = Topology(zones=("east", "west"), prefix=prefix("x"), workloads=(
    Workload("backend-1", "backend", "east"),
    Workload("web-1", "web", "west"),
    Workload("web-2", "web", "west"),  # its first call is the captured one
))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    yield from running(TOPOLOGY, tmp_path_factory.mktemp("cross-zone"))


@pytest.fixture(scope="module")
def reachable(env: Environment) -> Environment:
    """The environment once web-1's first call got through (zones learn of each other's
    ingress and services over the sync in the first seconds)."""
    eventually_sync(lambda: probes.call(env, "web-1", "http://backend.mesh/").zone == "east",
               timeout=60, what="web-1's first answer from backend in east")
    return env


def test_web_in_west_reaches_backend_in_east_through_its_ingress(reachable: Environment
                                                                 ) -> None:
    env = reachable
    assert all_from(env, "web-1", "backend", "east", n=20)
    tr = probes.trace(env, "web-1", "backend")
    assert tr.reply.served_by == ("backend", "backend-1", "east")
    east_ingress = f"{env.topology.ingress_ip('east')}:{INGRESS_PORT}"
    assert tr.client_hops == [("backend", east_ingress)]
    backend_sidecar = env.topology.workload_ip("backend-1")
    assert [host.split(":")[0] for _, host in tr.ingress_hops["east"]] == [backend_sidecar]


def test_dig_answers_the_vip_and_forwards_other_names(reachable: Environment) -> None:
    env = reachable
    vip = env.gossamer("get", "virtualip", "backend", "-o", "json", zone="west")
    rcode, answers = probes.dig(env, "web-1", "backend.mesh", port=53)
    assert rcode == "NOERROR"
    assert len(answers) == 1 and ipaddress.ip_address(answers[0]) in \
        ipaddress.ip_network("240.0.0.0/4")
    assert f'"{answers[0]}"' in vip  # west's own VIP for backend
    assert probes.dig(env, "web-1", "backend.mesh", tcp=True) == (rcode, answers)
    assert probes.dig(env, "web-1", "nosuch.mesh")[0] == "NXDOMAIN"
    # Not .mesh: forwarded to the upstream in the global's namespace, the only server
    # that knows this answer.
    assert probes.dig(env, "web-1", "example.org") == ("NOERROR", [EXAMPLE_ORG])
    assert probes.dig(env, "web-1", "unknown.example.org")[0] == "NXDOMAIN"


def test_a_permission_at_the_global_denies_web_then_allows_it_again(reachable: Environment
                                                                   ) -> None:
    env = reachable
    env.apply(deny("web", "backend"))
    try:
        eventually_sync(lambda: status_of(env, "web-1", "backend") == 403, timeout=30,
                   what="the deny applied at the global to refuse web-1's call in east")
        for _ in range(5):
            assert status_of(env, "web-1", "backend") == 403
        env.apply(deny("web", "backend", action="Allow"))
        eventually_sync(lambda: all_from(env, "web-1", "backend", "east", n=3), timeout=30,
                   what="the allow to restore the call")
    finally:
        env.gossamer("delete", "meshtrafficpermission", "web-to-backend", "-m", "default")
    assert all_from(env, "web-1", "backend", "east")


def test_the_ingress_holds_no_key_and_only_proxies_tcp(reachable: Environment) -> None:
    env = reachable
    for path in env.layout.ingress_dir("east").rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    ns = env.topology.ingress_ns("east")
    dump = json.loads(probes.admin_get(env, ns, INGRESS_ADMIN_PORT, "/config_dump?include_eds"))
    for config in dump["configs"]:
        config.get("bootstrap", {}).pop("node", None)  # the list of extensions Envoy has
    text = json.dumps(dump)
    assert "private_key" not in text and "DownstreamTlsContext" not in text
    listeners, clusters, secrets = ingress_config(dump)
    assert secrets == []
    assert listeners and all(chain.filters <= {"envoy.filters.network.tcp_proxy",
                                                "envoy.filters.network.direct_response"}
                             and not chain.transport_socket for chain in listeners)
    # Its only TLS is its own to the zone CP (the xDS cluster), verifying the CP.
    assert {name for name, tls in clusters.items() if tls} == {"gossamer_xds"}
    stats = probes.admin_get(env, ns, INGRESS_ADMIN_PORT, "/stats")
    counters = dict(line.split(": ", 1) for line in stats.splitlines() if ": " in line)
    assert int(counters["tcp.backend_default_mesh.downstream_cx_total"]) >= 1
    assert not [k for k in counters if k.startswith("http.")
                and not k.startswith(("http.admin.", "http.async-client."))]


def test_a_capture_on_the_wan_shows_only_tls(reachable: Environment, tmp_path: Path) -> None:
    env = reachable
    capture = tmp_path / "wan.pcap"
    web2 = env.topology.workload_ip("web-2")
    tcpdump = subprocess.Popen(
        netns.exec_argv(env.topology.wan_ns, [
            "tcpdump", "-i", wan_port("east"), "--immediate-mode", "-U", "-n", "-s", "0",
            "-w", str(capture), "tcp", "port", str(INGRESS_PORT)]),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def captured() -> dict[wire.Flow, bytes] | None:
        """web-2's connections, once both directions hold a handshake and an exchange."""
        streams = {flow: data for flow, data in
                   wire.tcp_streams(capture.read_bytes(), port=INGRESS_PORT).items()
                   if web2 in (flow[0], flow[2])}
        done = len(streams) >= 2 and all(len(data) > 1000 for data in streams.values())
        return streams if done else None

    try:
        assert tcpdump.stderr is not None
        assert "listening on" in tcpdump.stderr.readline()
        for _ in range(3):  # web-2's first calls: a new connection, handshake and all
            reply = probes.call(env, "web-2", "http://backend.mesh/")
            assert reply.zone == "east", reply
        streams = eventually_sync(captured, timeout=10, what=f"web-2's ({web2}) traffic to "
                             f"port {INGRESS_PORT} in the capture")
    finally:
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)
    for (src, _, _, _), data in streams.items():
        types = wire.tls_records(data)  # every byte is a TLS record
        assert types and types[0] == 22, "each direction opens with a TLS handshake"
        if src == web2:
            assert b"backend.default.mesh" in data  # the SNI the ingress routes on
        # Neither the HTTP, both ways, nor the certificates: mesh mTLS is TLS 1.3 only, so
        # the workload identities are encrypted too.
        for plain in (b"GET /", b"HTTP/1.1", b"curl/", b"served by", b"x-served-by",
                      b"spiffe://", b"Gossamer zone"):
            assert plain not in data, plain


@dataclass(frozen=True)
class Chain:
    filters: frozenset[str]
    transport_socket: bool


def ingress_config(dump: dict[str, Any]) -> tuple[list[Chain], dict[str, bool], list[object]]:
    """From an Envoy ``/config_dump``: the listeners' filter chains, each cluster with
    whether it has a TLS transport socket, and the secrets."""
    chains, clusters, secrets = [], {}, []
    for config in dump["configs"]:
        kind = config["@type"].rsplit(".", 1)[1]
        if kind == "ListenersConfigDump":
            for entry in config.get("dynamic_listeners", []):
                listener = entry.get("active_state", {}).get("listener", {})
                for chain in [*listener.get("filter_chains", []),
                              *filter(None, [listener.get("default_filter_chain")])]:
                    chains.append(Chain(frozenset(f["name"] for f in chain["filters"]),
                                        "transport_socket" in chain))
        elif kind == "ClustersConfigDump":
            for key in ("static_clusters", "dynamic_active_clusters"):
                for entry in config.get(key, []):
                    cluster = entry["cluster"]
                    clusters[cluster["name"]] = "transport_socket" in cluster
        elif kind == "SecretsConfigDump":
            for key in ("static_secrets", "dynamic_active_secrets", "dynamic_warming_secrets"):
                secrets += config.get(key, [])
    return chains, clusters, secrets
