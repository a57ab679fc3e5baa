"""The parts of a zone control plane and how they are wired, built once its store is open.

``build_parts`` only constructs (no task, no socket, no await): ``ZoneControlPlane``
then bootstraps a standalone zone, starts each part's loop and opens the ports. Every
part but the sync client writes through one unguarded ``ResourceManager``; the sync
client writes what the global sent straight to the store (``sync.applier``); the API gets
its own guarded manager (``zone_cp.guard``). A standalone zone owns its meshes' roots, so
it has a mesh CA controller (``authority.mesh_ca``); a federated one has the sync client
to the global.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from authority.mesh_ca import MeshCaController
from gossamer.api.serve import certificate_hosts
from gossamer.election.replica import replica_id
from gossamer.pki.serving import ServingTls, ensure_serving_tls
from gossamer.resources import ResourceManager
from gossamer.settings import ZoneSettings
from gossamer.store import shared_store
from gossamer.store.base import Store
from gossamer.store.view import StoreView
from proxy.context import ProxyContext
from proxy.envoy import PieceCache, generate
from proxy.envoy.resources import ProxyResources
from zone_cp.agent_service import AgentService
from zone_cp.agents import AgentRegistry
from zone_cp.ca import ZoneCa
from zone_cp.ca_keeper import ZoneCaKeeper
from zone_cp.cert_metrics import CertificateCollector
from zone_cp.egresses import EgressRegistry
from zone_cp.ingress_names import IngressNames
from zone_cp.ingresses import IngressRegistry
from zone_cp.inspect_relay import EnvoyInspector
from zone_cp.leftovers import DeadReplicas
from zone_cp.mesh_dns import VipView
from zone_cp.mesh_state import MeshState
from zone_cp.replicas import ReplicaRecords
from zone_cp.sync_client import ZoneSyncClient
from zone_cp.token_expiry import TokenLifetimes
from zone_cp.vip_controller import DnsPublisher, VipAllocator
from zone_cp.vips import parse_cidr
from zone_cp.xds import AdsServer
from zone_cp.xds_metrics import XdsCollector
from zone_cp.xds_server import XdsServer


@dataclass(frozen=True)
class ZoneParts:
    """A zone CP's parts (each documented in its own module)."""

    store: Store
    view: StoreView  # the store in memory: MeshState follows it, the API reads from it
    manager: ResourceManager  # unguarded: what the zone's own parts write through
    leader: ResourceManager  # the same, fenced by the zone's lease: the leader-only parts
    metrics: CollectorRegistry
    tls: ServingTls  # the serving CA and certificate of the API and the xDS port
    state: MeshState
    ingress_names: IngressNames  # other zones' ingresses advertised by name, resolved
    ingresses: IngressRegistry
    egresses: EgressRegistry
    agents: AgentRegistry
    vips: VipAllocator
    dns: DnsPublisher
    lifetimes: TokenLifetimes
    ads: AdsServer
    ca: ZoneCa  # every replica's signer and census
    ca_keeper: ZoneCaKeeper  # the leader's: intermediates and the zone's report
    replicas: ReplicaRecords | None  # replicas on a shared store: their records
    dead_replicas: DeadReplicas | None  # the leader's expiry of dead replicas' sidecars
    xds: XdsServer
    mesh_ca: MeshCaController | None  # standalone only
    sync: ZoneSyncClient | None  # federated only


def build_parts(s: ZoneSettings, store: Store, leader: Store | None = None) -> ZoneParts:
    """Construct and wire every part of the zone CP ``s`` describes over ``store``.

    ``leader`` is the store view of the leader-only parts (the sync with the global, VIP
    allocation, the zone CA's keeper, the expiry of dead replicas' sidecars, a standalone
    zone's mesh CAs), whose writes the zone's lease fences
    (``gossamer.election``); ``store`` itself by default."""
    manager = ResourceManager(store)
    leading = ResourceManager(leader) if leader is not None else manager
    metrics = CollectorRegistry()
    tls = ensure_serving_tls(s.directory / "tls", f"gossamer-zone-{s.zone}",
                             certificate_hosts(s.tls_hosts, s.api_addr))
    ingress_names = IngressNames()
    view = StoreView(store, shared=shared_store(s.store))
    state = MeshState(view, s.zone, names=ingress_names.addresses)
    replica = replica_id(s.directory) if shared_store(s.store) else ""
    ingresses = IngressRegistry(manager, state, s.zone, federated=s.federated,
                                replica=replica)
    egresses = EgressRegistry(manager, state, s.zone, federated=s.federated, replica=replica)
    # A federated zone never signs dataplane tokens: it verifies with the global's keys.
    agents = AgentRegistry(manager, s.zone, {"ZoneIngress": ingresses,
                                             "ZoneEgress": egresses},
                           signer=not s.federated, replica=replica)
    agents.trust.follow(egresses.renew)  # a mesh's CA change reaches its egresses too
    # Virtual IPs for every service the zone knows, and each mesh's DNS table for its
    # agents (DESIGN §6).
    vips = VipAllocator(state, leading, parse_cidr(s.vip_cidr))
    # One per zone CP: the DNS tables and the ADS server share it.
    vip_view = VipView(state, s.vip_cidr)
    dns = DnsPublisher(state, agents, vip_view)
    # Sessions and ADS streams end with their token (DESIGN §5).
    lifetimes = TokenLifetimes(store)
    cache = PieceCache()  # one for every proxy: a service's pieces built once per change
    ads = AdsServer(state, agents, _generator(cache), ingresses, lifetimes=lifetimes,
                    vips=vip_view, cache=cache, egresses=egresses)
    ca = ZoneCa(manager, s.zone, sidecars=agents.trust, metrics=metrics)
    # Replicas on one store: each keeps a record (heartbeat, census); the leader keeps the
    # CA and expires the sidecars of replicas that died (``zone_cp.replicas``).
    replicas = dead = None
    if replica:
        replicas = ReplicaRecords(manager, s.zone, replica, ca.statuses)
        ca.census_listeners.append(replicas.census_changed)
        replicas.on_revived.append(agents.restore)
        dead = DeadReplicas(leading, replicas, grace=s.agent_grace)
    ca_keeper = ZoneCaKeeper(leading, ca, s.zone, replicas, startup_grace=s.agent_grace)
    xds = XdsServer(s.xds_addr, ads, AgentService(agents, ca, lifetimes, egresses))
    mesh_ca = None
    if not s.federated:  # a standalone zone owns its meshes' roots
        mesh_ca = MeshCaController(leading, local_zone=s.zone, metrics=metrics)
    metrics.register(CertificateCollector(agents))
    metrics.register(XdsCollector(ads, agents))  # push latency, NACKs, connected
    sync = (ZoneSyncClient(s, leading, inspector=EnvoyInspector(agents, s.zone), view=view)
            if s.federated else None)
    return ZoneParts(store=store, view=view, manager=manager, leader=leading,
                     metrics=metrics, tls=tls, state=state,
                     ingress_names=ingress_names,
                     ingresses=ingresses, egresses=egresses, agents=agents, vips=vips,
                     dns=dns, lifetimes=lifetimes, ads=ads, ca=ca, ca_keeper=ca_keeper,
                     replicas=replicas, dead_replicas=dead, xds=xds, mesh_ca=mesh_ca,
                     sync=sync)


def _generator(cache: PieceCache) -> Callable[[ProxyContext], ProxyResources]:
    """``proxy.envoy.generate`` over the piece cache every proxy shares: a service's
    cluster and endpoints are built once per change, not once per proxy that calls it."""

    def generate_with_cache(ctx: ProxyContext) -> ProxyResources:
        return generate(ctx, cache)

    return generate_with_cache
