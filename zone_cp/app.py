"""The zone control plane process: store, API, and (federated) the sync with the global.

``ZoneControlPlane`` builds its parts (``zone_cp.parts``) from ``ZoneSettings`` once its
store is open; ``start``/``stop`` run it in-process for tests, ``serve_forever`` is what
``gossamer zone run`` calls. A standalone zone (no ``--global``) creates its own
``default`` mesh like a global does, and runs the CA controller of its meshes' roots.
Several replicas of a zone may share one PostgreSQL store: each serves xDS, the agent API
and the zone API; the leader-only parts run on the holder of the zone's lease
(``gossamer.election``), their writes fenced by it.
Its parts are public, read-only, for tests and tools (``parts`` and a property each);
reading one before ``start`` raises ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
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
from gossamer.election.core import Timing
from gossamer.election.leases import leases_for
from gossamer.election.runner import Election
from gossamer.errors import AlreadyExists, Conflict
from gossamer.gui.routes import gui_router
from gossamer.loop_lag import LoopLagMonitor
from gossamer.pki.backends.validation import ca_checks
from gossamer.pki.serving import ServingTls
from gossamer.process import run_until_signal
from gossamer.resources import ResourceManager
from gossamer.settings import ZoneSettings
from gossamer.shared_credentials import share_credentials
from gossamer.store import open_store, shared_store
from gossamer.store.base import Store
from gossamer.telemetry import install_from_env
from gossamer.tokens import DATAPLANE
from zone_cp.agents import AgentRegistry
from zone_cp.ca import ZoneCa
from zone_cp.check_routes import check_router
from zone_cp.dataplane_routes import dataplane_router
from zone_cp.guard import zone_write_guard
from zone_cp.health_report import HealthReporter
from zone_cp.http_sd import http_sd_router
from zone_cp.ingresses import IngressRegistry
from zone_cp.inspect_relay import EnvoyInspector, inspect_router
from zone_cp.mesh_state import MeshState
from zone_cp.parts import ZoneParts, build_parts
from zone_cp.sync_client import ZoneSyncClient
from zone_cp.sync_metrics import SyncCollector
from zone_cp.token_expiry import TokenLifetimes
from zone_cp.token_routes import federated_dataplane_token_router
from zone_cp.vip_controller import DnsPublisher, VipAllocator
from zone_cp.xds import AdsServer
from zone_cp.xds_server import XdsServer

log = logging.getLogger(__name__)


class ZoneControlPlane:
    def __init__(self, settings: ZoneSettings) -> None:
        self.settings = settings
        self.admin_token = ""
        self._store: Store | None = None  # open before the parts exist: stop closes it
        self._parts: ZoneParts | None = None
        self._api: ApiServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.health: HealthReporter | None = None  # federated: its ZoneHealth reports
        self._leading: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._failed: asyncio.Future[None] | None = None  # a leader-only part's failure

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
        self._failed = asyncio.get_running_loop().create_future()
        self.admin_token = load_or_create_admin_token(s.directory)
        self._store = await open_store(s.store, s.directory)
        if not s.federated:
            # First, while a new store is still at revision 0 (how ``bootstrap`` knows it
            # is new): the shared credentials below are writes too.
            with contextlib.suppress(AlreadyExists, Conflict):  # replicas starting together
                await bootstrap(ResourceManager(self._store))
        if shared_store(s.store):  # replicas: one admin token, one CA for every agent
            self.admin_token = await share_credentials(
                ResourceManager(self._store), s.directory, f"gossamer-zone-{s.zone}",
                certificate_hosts(s.tls_hosts, s.api_addr))
        # Leader-only work (the sync with the global, VIP allocation, the zone CA's keeper,
        # the expiry of dead replicas' sidecars, a standalone zone's mesh CAs and token
        # upkeep) runs on the replica holding the zone's lease.
        self.election = Election(leases_for(self._store), "zone", self._leader_work,
                                 timing=Timing.for_ttl(s.leader_lease))
        parts = self._parts = build_parts(s, self._store, self.election.fenced(self._store))
        self.election.register_metrics(parts.metrics)
        if not s.federated:
            # A standalone zone signs its own dataplane tokens: it keeps their keys (moved
            # out of mesh Secrets if an older version put them there) and revocations.
            await migrate_token_state(parts.manager)
            self._leading.append(TokenUpkeep(parts.leader).run)
        self._spawn(LoopLagMonitor(parts.metrics).run(), "loop-lag")
        self._spawn(parts.view.run(), "store-view")
        self._spawn(parts.state.run(), "mesh-state")
        self._spawn(parts.ads.fleet.run(), "xds-fleet")
        self._spawn(parts.ingress_names.run(parts.state), "ingress-names")
        self._spawn(parts.ingresses.run(), "ingresses")
        self._spawn(parts.agents.run(s.agent_grace), "agents")
        self._leading.append(parts.vips.run)
        self._spawn(parts.lifetimes.run(), "token-lifetimes")
        self._spawn(parts.ca.run(), "zone-ca")
        self._leading.append(parts.ca_keeper.run)
        if parts.replicas is not None and parts.dead_replicas is not None:
            self._spawn(parts.replicas.run(), "replica-record")
            self._leading.append(parts.dead_replicas.run)
        if parts.mesh_ca is not None:
            self._leading.append(parts.mesh_ca.run)
        mode = "zone" if s.federated else "standalone"
        # The API writes through a guarded manager: a federated zone refuses writes to
        # what the global owns.
        api_manager = ResourceManager(self._store, guard=zone_write_guard(s.federated),
                                      checks=ca_checks(), view=parts.view)
        app = build_app(ApiContext(manager=api_manager, admin_token=self.admin_token,
                                   mode=mode, extra_routers=self._routers(parts),
                                   metrics=parts.metrics,
                                   extra_info=lambda: {"zone": s.zone},
                                   max_body=s.api.max_body))
        self._api = ApiServer(app, s.api_addr, api_tls(s.api, s.api_addr, parts.tls))
        await self._api.start()
        await parts.xds.start(parts.tls.cert_file.read_bytes(),
                              parts.tls.key_file.read_bytes())
        if parts.sync is not None:
            sync = parts.sync
            parts.metrics.register(SyncCollector(s.zone, lambda: sync.status,
                                                 lambda: self.election.role.value))
            self._leading.append(sync.run)
            state = parts.state
            self.health = HealthReporter(s.zone, parts.leader, parts.agents,
                                         parts.ads.insights, s.vip_cidr, s.token_file,
                                         parts.sync, lambda: state.of_kind("Dataplane"))
            self._leading.append(self.health.run)
        self._spawn(self.election.run(), "election")
        await self.election.wait_settled()  # alone on its store: leads when start returns
        log.info("zone %s control plane (%s) API on %s", s.zone, mode, self.api_url)

    async def _leader_work(self) -> None:
        """The leader-only parts, for one term. One that fails (the global refused our
        token) ends the process through ``wait``, as before there were replicas."""
        try:
            async with asyncio.TaskGroup() as group:
                for run in self._leading:
                    group.create_task(run(), name=getattr(run, "__qualname__", "leader"))
        except ExceptionGroup as group:  # the part's own error, as the CLI reports it
            if self._failed is not None and not self._failed.done():
                self._failed.set_exception(group.exceptions[0])
            raise

    def _spawn(self, part: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(part, name=name))

    def _routers(self, parts: ZoneParts) -> list[APIRouter]:
        """The zone's own API routes beside the generic resource routes."""
        manager = parts.manager
        routers = [dataplane_router(manager, parts.agents, parts.ads),
                   services_router(manager, self.settings.zone),
                   check_router(self.settings, parts),
                   inspect_router(EnvoyInspector(parts.agents, self.settings.zone)),
                   http_sd_router(parts.agents, parts.ads, self.settings.zone),
                   gui_router(manager, self.admin_token, self.settings.zone)]
        if parts.mesh_ca is None:
            routers.append(federated_dataplane_token_router())
        else:
            routers.append(dataplane_token_router(
                lambda mesh: TokenAuthority(manager, DATAPLANE, mesh)))
            # A rotation request is a versioned write any replica may make (the
            # leader's controller carries it out), as at the global.
            routers.append(mesh_router(manager, MeshCaController(
                manager, local_zone=self.settings.zone), local_zone=self.settings.zone))
        return routers

    async def stop(self) -> None:
        if self._parts is not None:
            self._parts.agents.stopping()  # sessions ended by our stop keep their resources
            await self._parts.xds.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._api is not None:
            await self._api.stop()
        if self._store is not None:
            await self._store.close()

    async def wait(self) -> None:
        """Return when the API stops or a background part (the sync) fails; re-raise why."""
        waiters: list[asyncio.Future[None]] = list(self._tasks)
        if self._failed is not None:
            waiters.append(self._failed)
        if self._api is not None:
            waiters.append(asyncio.create_task(self._api.wait()))
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    # -- the parts, once started (``zone_cp.parts``) ---------------------------------------

    @property
    def parts(self) -> ZoneParts:
        """Every part of the running CP; ``RuntimeError`` before ``start``."""
        if self._parts is None:
            raise RuntimeError("the zone control plane is not started")
        return self._parts

    @property
    def store(self) -> Store:
        return self.parts.store

    @property
    def manager(self) -> ResourceManager:
        """The CP's resource manager: unguarded, what its own parts write through."""
        return self.parts.manager

    @property
    def metrics(self) -> CollectorRegistry:
        return self.parts.metrics

    @property
    def tls(self) -> ServingTls:
        return self.parts.tls

    @property
    def state(self) -> MeshState:
        return self.parts.state

    @property
    def ingresses(self) -> IngressRegistry:
        return self.parts.ingresses

    @property
    def agents(self) -> AgentRegistry:
        return self.parts.agents

    @property
    def vips(self) -> VipAllocator:
        return self.parts.vips

    @property
    def dns(self) -> DnsPublisher:
        return self.parts.dns

    @property
    def lifetimes(self) -> TokenLifetimes:
        return self.parts.lifetimes

    @property
    def ads(self) -> AdsServer:
        return self.parts.ads

    @property
    def ca(self) -> ZoneCa:
        return self.parts.ca

    @property
    def xds(self) -> XdsServer:
        return self.parts.xds

    @property
    def mesh_ca(self) -> MeshCaController:
        """A standalone zone's mesh CA controller; ``RuntimeError`` in a federated one."""
        if self.parts.mesh_ca is None:
            raise RuntimeError("a federated zone has no mesh CA controller")
        return self.parts.mesh_ca

    @property
    def sync(self) -> ZoneSyncClient:
        """A federated zone's sync client; ``RuntimeError`` in a standalone one."""
        if self.parts.sync is None:
            raise RuntimeError("a standalone zone has no sync client")
        return self.parts.sync


def serve_forever(settings: ZoneSettings) -> None:
    """Run until SIGINT/SIGTERM; spans go out over OTLP if OTEL_EXPORTER_OTLP_* say so."""
    install_from_env("gossamer-zone", {"gossamer.zone": settings.zone})
    asyncio.run(run_until_signal(ZoneControlPlane(settings), pace_gc=True))
