"""The global control plane process: store, API and (with federation) the zone sync.

``GlobalControlPlane`` assembles the parts from ``GlobalSettings``; ``start`` and
``stop`` let tests run it in-process, ``serve_forever`` is what ``gossamer global run``
calls. Everything runs on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial

from prometheus_client import CollectorRegistry

from authority.bootstrap import bootstrap
from authority.mesh_ca import MeshCaController
from authority.mesh_routes import mesh_router
from authority.token_authority import TokenAuthority
from authority.token_routes import dataplane_token_router, zone_token_router
from authority.token_upkeep import TokenUpkeep, migrate_token_state
from global_cp.certificate_routes import certificate_router
from global_cp.check_routes import check_router
from global_cp.insight_store import InsightJanitor, InsightPublisher, stored_insights
from global_cp.insights import Insights
from global_cp.inspect_relay import inspect_router
from global_cp.sync_server import ZoneSyncServer
from global_cp.zone_routes import zone_overview_router
from gossamer.api.app import ApiContext, build_app
from gossamer.api.serve import ApiServer, api_tls, certificate_hosts
from gossamer.api.services import services_router
from gossamer.election.core import Timing
from gossamer.election.leases import leases_for
from gossamer.election.replica import replica_id
from gossamer.election.runner import Election
from gossamer.errors import AlreadyExists, Conflict, GossamerError
from gossamer.gui.routes import gui_router
from gossamer.loop_lag import LoopLagMonitor
from gossamer.model.registry import REGISTRY
from gossamer.pki.backends.validation import ca_checks
from gossamer.pki.serving import ServingTls
from gossamer.process import run_until_signal
from gossamer.resources import ResourceManager, deny_system
from gossamer.settings import GlobalSettings, split_addr
from gossamer.shared_credentials import share_admin_token, shared_serving_tls
from gossamer.store import open_store, shared_store
from gossamer.store.base import Store
from gossamer.store.view import StoreView
from gossamer.telemetry import install_from_env
from gossamer.tokens import DATAPLANE, ZONE

log = logging.getLogger(__name__)


class GlobalControlPlane:
    def __init__(self, settings: GlobalSettings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.admin_token = ""
        self._api: ApiServer | None = None
        self.sync: ZoneSyncServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._singletons: list[TokenUpkeep | MeshCaController | InsightJanitor] = []
        self._publisher: InsightPublisher | None = None

    @property
    def api_url(self) -> str:
        host, port = self.bound_api_addr
        scheme = self._api.scheme if self._api is not None else "http"
        return f"{scheme}://{host}:{port}"

    @property
    def bound_api_addr(self) -> tuple[str, int]:
        """The API's address, with the real port when ``--api-addr`` asked for port 0."""
        host, port = split_addr(self.settings.api_addr)
        if self._api is not None:
            port = self._api.port
        return ("127.0.0.1" if host in ("0.0.0.0", "") else host), port

    async def start(self) -> None:
        """Start every part, or stop the ones that started and re-raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = await open_store(self.settings.store, data_dir)
        manager = ResourceManager(self.store)
        if self.settings.bootstrap_default_mesh:
            # Replicas starting together on a new store: one makes the mesh.
            with contextlib.suppress(AlreadyExists, Conflict):
                await bootstrap(manager)
        self.admin_token = await share_admin_token(manager, data_dir)
        # Signing keys and revocations of older versions move before anyone verifies.
        await migrate_token_state(manager)
        self.zone_tokens = TokenAuthority(manager, ZONE)
        await self.zone_tokens.keys()  # the first signing key, before any zone asks
        metrics = CollectorRegistry()
        await self._elect(manager, metrics)
        self.insights = Insights(metrics)
        self._tasks.append(asyncio.create_task(LoopLagMonitor(metrics).run(), name="loop-lag"))
        tls = await self._serving_tls(manager)
        self.tls = tls
        # The store in memory (every kind: the sync publishes revocations too): the
        # sync's feed follows it and the API's reads come from it.
        self.view = StoreView(self.store, kinds=[d.name for d in REGISTRY],
                              shared=shared_store(self.settings.store))
        self._tasks.append(asyncio.create_task(self.view.run(), name="store-view"))
        self.sync = ZoneSyncServer(self.settings, self.store, manager, self.zone_tokens,
                                   self.insights, view=self.view)
        await self.sync.start((tls.cert_file.read_bytes(), tls.key_file.read_bytes()))
        # A rotation request is a versioned write any replica may make; the leader's
        # controller carries it out.
        replica = replica_id(data_dir)  # its insights record: taken back after a restart
        self._publisher = InsightPublisher(self.store, self.insights, replica)
        self._tasks.append(asyncio.create_task(self._publisher.run(), name="insights"))
        # Stored records only, never this replica's live view: every replica answers alike.
        view = partial(stored_insights, self.store)
        routers = [zone_overview_router(manager, view), certificate_router(manager),
                   mesh_router(manager, MeshCaController(manager)),
                   services_router(manager, local_zone=""),
                   zone_token_router(self.zone_tokens),
                   dataplane_token_router(lambda mesh: TokenAuthority(manager, DATAPLANE, mesh)),
                   check_router(manager, view, self.election.status),
                   inspect_router(self.sync.relays), gui_router(manager, self.admin_token)]
        # The API's writes are checked (CA material) and may not touch system kinds.
        api_manager = ResourceManager(self.store, guard=deny_system, checks=ca_checks(),
                                      view=self.view)
        app = build_app(ApiContext(manager=api_manager, admin_token=self.admin_token,
                                   mode="global", extra_routers=routers, metrics=metrics,
                                   max_body=self.settings.api.max_body))
        self._api = ApiServer(app, self.settings.api_addr,
                              api_tls(self.settings.api, self.settings.api_addr, tls))
        await self._api.start()
        log.info("global control plane API on %s (data in %s)", self.api_url, data_dir)

    async def _serving_tls(self, manager: ResourceManager) -> ServingTls:
        """This replica's serving certificate, from the CA every replica shares."""
        hosts = certificate_hosts(self.settings.tls_hosts, self.settings.api_addr)
        return await shared_serving_tls(manager, self.settings.data_dir / "tls",
                                        "gossamer-global", hosts)

    async def _elect(self, manager: ResourceManager, metrics: CollectorRegistry) -> None:
        """The singleton work (mesh CAs, token upkeep, pruning the zone insights of
        replicas gone for good) runs on the elected replica only, through a store that
        refuses its writes outside the replica's terms."""
        assert self.store is not None
        self.election = Election(leases_for(self.store), "global", self._singleton_work,
                                 timing=Timing.for_ttl(self.settings.leader_lease),
                                 metrics=metrics)
        leader = ResourceManager(self.election.fenced(self.store))
        self.mesh_ca = MeshCaController(leader, metrics=metrics)
        self._singletons = [TokenUpkeep(leader), self.mesh_ca,
                            InsightJanitor(leader.store)]
        self._tasks.append(asyncio.create_task(self.election.run(), name="election"))
        await self.election.wait_settled()  # alone on its store: leads when start returns

    async def _singleton_work(self) -> None:
        async with asyncio.TaskGroup() as group:
            for part in self._singletons:
                group.create_task(part.run(), name=type(part).__name__)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.sync is not None:
            await self.sync.stop()
        if self._publisher is not None:  # the streams just ended: say so to the others
            with contextlib.suppress(GossamerError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._publisher.publish()
        if self._api is not None:
            await self._api.stop()
        if self.store is not None:
            await self.store.close()

    async def wait(self) -> None:
        if self._api is not None:
            await self._api.wait()


def serve_forever(settings: GlobalSettings) -> None:
    """Run until SIGINT/SIGTERM; spans go out over OTLP if OTEL_EXPORTER_OTLP_* say so."""
    install_from_env("gossamer-global", None)
    asyncio.run(run_until_signal(GlobalControlPlane(settings), pace_gc=True))
