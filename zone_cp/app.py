"""The zone control plane process: store, API, and (federated) the sync with the global.

``ZoneControlPlane`` assembles the parts from ``ZoneSettings``; ``start``/``stop`` run it
in-process for tests, ``serve_forever`` is what ``gossamer zone run`` calls. A standalone
zone (no ``--global``) creates its own ``default`` mesh like a global does.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry

from authority.bootstrap import bootstrap
from authority.mesh_ca import MeshCaController
from authority.mesh_routes import mesh_router
from authority.token_authority import TokenAuthority
from authority.token_routes import dataplane_token_router
from authority.token_upkeep import TokenUpkeep, migrate_token_state
from gossamer.api.app import ApiContext, build_app
from gossamer.api.auth import load_or_create_admin_token
from gossamer.api.serve import ApiServer, api_tls, certificate_hosts
from gossamer.api.services import services_router
from gossamer.pki.backends.validation import ca_checks
from gossamer.pki.serving import ensure_serving_tls
from gossamer.process import run_until_signal
from gossamer.resources import ResourceManager
from gossamer.settings import ZoneSettings
from gossamer.store import open_store
from gossamer.store.base import Store
from gossamer.tokens import DATAPLANE
from proxy.envoy import PieceCache, generate
from zone_cp.agent_service import AgentService
from zone_cp.agents import AgentRegistry
from zone_cp.ca import ZoneCa
from zone_cp.cert_metrics import CertificateCollector
from zone_cp.dataplane_routes import dataplane_router
from zone_cp.guard import zone_write_guard
from zone_cp.ingresses import IngressRegistry
from zone_cp.mesh_dns import VipView
from zone_cp.mesh_state import MeshState
from zone_cp.token_expiry import TokenLifetimes
from zone_cp.token_routes import federated_dataplane_token_router
from zone_cp.vip_controller import DnsPublisher, VipAllocator
from zone_cp.vips import parse_cidr
from zone_cp.xds import AdsServer
from zone_cp.xds_server import XdsServer

log = logging.getLogger(__name__)


class ZoneControlPlane:
    def __init__(self, settings: ZoneSettings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.admin_token = ""
        self._api: ApiServer | None = None
        self.xds: XdsServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def api_url(self) -> str:
        port = self._api.port if self._api else 0
        scheme = self._api.scheme if self._api else "http"
        return f"{scheme}://127.0.0.1:{port}"

    async def start(self) -> None:
        """Start every part, or stop the ones that started and re-raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        s = self.settings
        s.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.admin_token = load_or_create_admin_token(s.directory)
        self.store = await open_store(s.store, s.directory)
        # The sync writes through an unguarded manager; the API through a guarded one.
        self.manager = ResourceManager(self.store)
        api_manager = ResourceManager(self.store, guard=zone_write_guard(s.federated),
                                      checks=ca_checks())
        if not s.federated:
            await bootstrap(self.manager)
            # A standalone zone signs its own dataplane tokens: it keeps their keys (moved
            # out of mesh Secrets if an older version put them there) and revocations.
            await migrate_token_state(self.manager)
            self._tasks.append(asyncio.create_task(TokenUpkeep(self.manager).run(),
                                                   name="token-upkeep"))
        self.metrics = CollectorRegistry()
        xds = self._prepare_xds()
        routers = [dataplane_router(self.manager, self.agents, self.ads)]
        routers.append(services_router(self.manager, s.zone))
        if s.federated:
            routers.append(federated_dataplane_token_router())
        else:
            routers.append(dataplane_token_router(
                lambda mesh: TokenAuthority(self.manager, DATAPLANE, mesh)))
            # A standalone zone owns its meshes' roots: it runs the CA controller itself.
            self.mesh_ca = MeshCaController(self.manager, local_zone=s.zone,
                                            metrics=self.metrics)
            self._tasks.append(asyncio.create_task(self.mesh_ca.run(), name="mesh-ca"))
            routers.append(mesh_router(self.manager, self.mesh_ca, local_zone=s.zone))
        mode = "zone" if s.federated else "standalone"
        self.metrics.register(CertificateCollector(self.agents))
        app = build_app(ApiContext(manager=api_manager, admin_token=self.admin_token,
                                   mode=mode, extra_routers=routers, metrics=self.metrics,
                                   extra_info=lambda: {"zone": s.zone},
                                   max_body=s.api.max_body))
        self._api = ApiServer(app, s.api_addr, api_tls(s.api, s.api_addr, self.tls))
        await self._api.start()
        await xds.start(self.tls.cert_file.read_bytes(), self.tls.key_file.read_bytes())
        if s.federated:
            from zone_cp.sync_client import ZoneSyncClient

            self.sync = ZoneSyncClient(s, self.manager)
            self._tasks.append(asyncio.create_task(self.sync.run(), name="zone-sync"))
        log.info("zone %s control plane (%s) API on %s", s.zone, mode, self.api_url)

    def _prepare_xds(self) -> XdsServer:
        s = self.settings
        self.tls = ensure_serving_tls(s.directory / "tls", f"gossamer-zone-{s.zone}",
                                      certificate_hosts(s.tls_hosts, s.api_addr))
        self.state = MeshState(self.manager.store, s.zone)
        self._tasks.append(asyncio.create_task(self.state.run(), name="mesh-state"))
        self.ingresses = IngressRegistry(self.manager, self.state, s.zone,
                                         federated=s.federated)
        self._tasks.append(asyncio.create_task(self.ingresses.run(), name="ingresses"))
        self.agents = AgentRegistry(self.manager, s.zone, {"ZoneIngress": self.ingresses})
        self._tasks.append(asyncio.create_task(self.agents.run(s.agent_grace), name="agents"))
        # Virtual IPs for every service the zone knows, and each mesh's DNS table for its
        # agents (DESIGN §6).
        self.vips = VipAllocator(self.state, self.manager, parse_cidr(s.vip_cidr))
        self._tasks.append(asyncio.create_task(self.vips.run(), name="vip-allocator"))
        self.dns = DnsPublisher(self.state, self.agents, VipView(self.state))
        # One piece cache for every proxy: a service's cluster and endpoints are built once
        # per change, not once per proxy that calls the service.
        cache = PieceCache()
        # Sessions and ADS streams end with their token (DESIGN §5).
        self.lifetimes = TokenLifetimes(self.manager.store)
        self._tasks.append(asyncio.create_task(self.lifetimes.run(), name="token-lifetimes"))
        self.ads = AdsServer(self.state, self.agents, lambda ctx: generate(ctx, cache),
                             self.ingresses, lifetimes=self.lifetimes)
        self.ca = ZoneCa(self.manager, s.zone, sidecars=self.agents, metrics=self.metrics,
                         startup_grace=s.agent_grace)
        self._tasks.append(asyncio.create_task(self.ca.run(), name="zone-ca"))
        self.xds = XdsServer(s.xds_addr, self.ads, AgentService(self.agents, self.ca,
                                                                  self.lifetimes))
        return self.xds

    async def stop(self) -> None:
        if self.xds is not None:
            self.agents.stopping()  # sessions ended by our stop keep their resources stored
            await self.xds.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._api is not None:
            await self._api.stop()
        if self.store is not None:
            await self.store.close()

    async def wait(self) -> None:
        """Return when the API stops or a background part (the sync) fails; re-raise why."""
        waiters = list(self._tasks)
        if self._api is not None:
            waiters.append(asyncio.create_task(self._api.wait()))
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()


def serve_forever(settings: ZoneSettings) -> None:
    """Run until SIGINT/SIGTERM."""
    asyncio.run(run_until_signal(ZoneControlPlane(settings)))
