"""The global's side of the zone sync: ``gossamer.sync.v1.ZoneSync`` over gRPC with TLS.

``GlobalToZone``: the global publishes meshes, policies, secrets and the other zones'
ingresses; one ``Engine`` per stream, fed from one shared ``StoreFeed``, filtered per zone
(a zone never receives its own ingresses, nor those of disabled zones).
``ZoneToGlobal``: the zone publishes its Dataplanes and ZoneIngresses; the global keeps
them under zone-hashed names (``sync.applier.ZoneRename``).
``Relay``: the global's on-demand requests to the zone (``inspect`` of a sidecar's Envoy,
``global_cp.inspect_relay``), on a stream the zone opens; not counted in the insights.

Every stream starts with the zone token (``authorization: Bearer``) and the zone name
(``gossamer-zone``) in its metadata. A missing, expired, revoked, forged or foreign
token, or a disabled zone, is refused with UNAUTHENTICATED / PERMISSION_DENIED and the
reason; a token revoked or a zone disabled while streaming ends its streams at once.

Mesh Secrets that are Vault credentials no zone uses stay at the global
(``global_cp.credentials``); signing keys never reach the feed (they are GlobalSecrets).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from authority.token_authority import TokenAuthority
from global_cp.credentials import withheld_secrets
from global_cp.insights import Insights
from global_cp.inspect_relay import RelayHub
from gossamer.errors import (
    AlreadyExists,
    GossamerError,
    InvalidResource,
    NotFound,
    RevisionCompacted,
)
from gossamer.model.base import Resource, check_name
from gossamer.model.labels import ORIGIN_GLOBAL, ORIGIN_LABEL, ORIGIN_ZONE, ZONE_LABEL
from gossamer.model.mesh import MeshSpec, ProvidedConf, SecretRef
from gossamer.model.registry import parse_document
from gossamer.model.tokenrevocation import TokenRevocationSpec, revocation_name
from gossamer.model.zone import disabled_zones, is_enabled
from gossamer.resources import ResourceManager
from gossamer.settings import GlobalSettings, split_addr
from gossamer.store.base import EventType, Store
from gossamer.store.view import StoreView
from gossamer.tokens import ZONE, Claims, TokenRejected
from sync.applier import ZoneRename, apply_to_store, load_mirror
from sync.bounds import Bounds
from sync.client_state import Applied, Mirror
from sync.codec import decode, kind_type_url, resource_key
from sync.engine import Engine
from sync.feed import FeedView, Item, StoreFeed, strip_meta
from sync.observed import Observed
from sync.stream import Heartbeats, StreamStalled, abort_status, publish, subscribe
from sync.v1 import sync_pb2_grpc
from sync.zone_link import ADMITTED, GLOBAL_KINDS, GRPC_OPTIONS, ZONE_KINDS, ZONE_METADATA

log = logging.getLogger(__name__)

INGRESS_URL = kind_type_url("ZoneIngress")
ZONE_URL = kind_type_url("Zone")
ZONE_CERT_URL = kind_type_url("ZoneCertificate")
SECRET_URL = kind_type_url("Secret")
# What decides which Secrets are withheld (see global_cp.credentials).
CREDENTIAL_URLS = (kind_type_url("Mesh"), kind_type_url("MeshTrust"))
PUBLISHED_KINDS = [*GLOBAL_KINDS, "ZoneIngress", "Zone"]
# A zone subscribes to what the global publishes, nothing else (sync/bounds.py).
ZONE_SYNC_BOUNDS = Bounds(types=frozenset(kind_type_url(k) for k in PUBLISHED_KINDS))


# What a provided backend's inline key (stored before apply refused one) becomes in the
# copy zones get: zones never sign with a provided root, so they never read it, and a
# ``secretRef`` keeps the copy valid (a SecretRef needs one of the two).
WITHHELD_KEY = SecretRef(secret_ref="withheld-inline-key")


def _without_inline_keys(spec: MeshSpec) -> MeshSpec:
    """``spec`` with every provided backend's inline private key withheld."""
    if spec.mtls is None or not any(isinstance(b.conf, ProvidedConf) and b.conf.key.inline
                                    for b in spec.mtls.backends):
        return spec
    backends = [b.model_copy(update={"conf": b.conf.model_copy(update={"key": WITHHELD_KEY})})
                if isinstance(b.conf, ProvidedConf) and b.conf.key.inline else b
                for b in spec.mtls.backends]
    return spec.model_copy(update={"mtls": spec.mtls.model_copy(update={"backends": backends})})


def _prepare(res: Resource) -> Resource | None:
    """What the global publishes: its own kinds labelled as global-owned (a Mesh without
    any inline provided-CA key), zone ingresses as their zones sent them, zones (used only
    for filtering) as they are."""
    if res.type in GLOBAL_KINDS:
        spec = _without_inline_keys(res.spec) if isinstance(res.spec, MeshSpec) else res.spec
        return strip_meta(Resource(type=res.type, name=res.name, mesh=res.mesh, spec=spec,
                                   labels={**res.labels, ORIGIN_LABEL: ORIGIN_GLOBAL}))
    if res.type == "ZoneIngress":
        return strip_meta(res) if res.labels.get(ORIGIN_LABEL) == ORIGIN_ZONE else None
    return strip_meta(res)


@dataclass
class _Session:
    zone: str
    claims: Claims
    task: asyncio.Task[None]
    withdrawn: _Refused | None = None  # set before the task is cancelled for it


class _Refused(GossamerError):
    """A zone's stream refused at admission or cut later: ``grpc_status`` is what the
    zone is answered, ``reason`` labels the rejection metric."""

    def __init__(self, code: grpc.StatusCode, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.grpc_status, self.reason = code.name, reason

    @property
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode[self.grpc_status]


class ZoneSyncServer(sync_pb2_grpc.ZoneSyncServicer):
    def __init__(self, settings: GlobalSettings, store: Store, manager: ResourceManager,
                 tokens: TokenAuthority, insights: Insights,
                 view: StoreView | None = None) -> None:
        self._settings = settings
        self._store = store
        self._manager = manager
        self._tokens = tokens
        self.insights = insights
        self.relays = RelayHub(insights)
        self._beats = Heartbeats(settings.heartbeat_interval, settings.heartbeat_timeout)
        # Fed by the global's view when it keeps one: one watch, one object per resource.
        self._feed = StoreFeed(view or store, PUBLISHED_KINDS, _prepare)
        self._sessions: dict[str, _Session] = {}
        self._ids = itertools.count(1)
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0

    async def start(self, tls: tuple[bytes, bytes]) -> None:
        cert, key = tls
        self._tasks = [asyncio.create_task(self._feed.run(), name="sync-feed"),
                       asyncio.create_task(self._watch_access(), name="sync-access")]
        await self._feed.ready.wait()
        self._server = grpc.aio.server(options=GRPC_OPTIONS,
                                       compression=grpc.Compression.Gzip)
        sync_pb2_grpc.add_ZoneSyncServicer_to_server(self, self._server)
        host, port = split_addr(self._settings.sync_addr)
        creds = grpc.ssl_server_credentials([(key, cert)])
        self.port = self._server.add_secure_port(f"{host}:{port}", creds)
        if not self.port:
            raise OSError(f"the zone sync cannot listen on {self._settings.sync_addr}")
        await self._server.start()
        log.info("zone sync (gRPC, TLS) on %s:%d", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=1)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- admission ----------------------------------------------------------------------

    async def _admit(self, context: grpc.aio.ServicerContext) -> tuple[str, Claims]:
        try:
            return await self._check_admission(context)
        except _Refused:
            raise
        except GossamerError as exc:  # the store failed us, not the zone: it should retry
            raise _Refused(grpc.StatusCode.UNAVAILABLE, "unavailable",
                           f"the global could not check the zone's access: {exc.detail}"
                           ) from None

    async def _check_admission(self, context: grpc.aio.ServicerContext) -> tuple[str, Claims]:
        meta = {k: v for k, v in (context.invocation_metadata() or ())}
        zone = str(meta.get(ZONE_METADATA, ""))
        if check_name(zone, "zone"):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "bad-zone",
                           f"invalid zone name {zone!r} in the gossamer-zone metadata")
        auth = str(meta.get("authorization", ""))
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        try:
            claims = await self._tokens.verify(token, subject=zone, scope="cp")
        except TokenRejected as exc:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, exc.reason, exc.detail) from None
        try:
            record = await self._manager.get("Zone", zone)
        except NotFound:
            # Both streams of a new zone race to create it; the loser reads the winner's.
            with contextlib.suppress(AlreadyExists):
                await self._manager.store.create(parse_document({"type": "Zone", "name": zone}))
            record = await self._manager.get("Zone", zone)
        if not is_enabled(record):
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED, "disabled",
                           f"zone {zone!r} is disabled at the global (Zone.enabled: false)")
        return zone, claims

    async def _run(self, context: grpc.aio.ServicerContext, publishing: bool | None,
                   body: Callable[[str, Any], Any]) -> None:
        """Admit a zone's stream and run ``body`` on it until it ends or is cut off;
        ``publishing`` None: a stream the insights do not count (``Relay``)."""
        try:
            zone, claims = await self._admit(context)
        except _Refused as exc:
            self.insights.rejections.labels(exc.reason).inc()
            log.warning("zone stream refused: %s", exc.detail)
            await context.abort(exc.code, f"{exc.reason}: {exc.detail}")
            return
        # Say "admitted" before anything else: a zone writes only after it, so a refusal
        # reaches it as the status above, not as a failed write (which gRPC reports as
        # INTERNAL, losing the reason).
        await context.send_initial_metadata(((ADMITTED, zone),))
        sid = f"{zone}#{next(self._ids)}"
        meta = dict(context.invocation_metadata() or ())
        counted = publishing is not None
        stream: Any = context
        if publishing is not None:
            self.insights.connected(zone, str(meta.get("gossamer-version", "")))
            stream = self.insights.observe(context, zone, publishing)
        task = asyncio.create_task(body(sid, stream))
        self._sessions[sid] = _Session(zone, claims, task)
        session = self._sessions[sid]
        expiry = asyncio.get_running_loop().call_later(
            max(claims.expires_at - time.time(), 0.0), self._expire, sid)
        error = ""
        try:
            await task
        except asyncio.CancelledError:
            cut = session.withdrawn
            if not context.cancelled() and task.cancelled() and cut is not None:
                error = f"{cut.reason}: {cut.detail}"
                self.insights.rejections.labels(cut.reason).inc()
                await context.abort(cut.code, error)
            raise
        except StreamStalled as exc:
            error = exc.detail
            log.warning("zone %s stream %s stalled: %s", zone, sid, exc.detail)
        except GossamerError as exc:
            error = exc.detail
            log.info("zone %s stream %s ended: %s", zone, sid, exc.detail)
            if (code := abort_status(exc)) is not None:  # a bound, a broken protocol
                await context.abort(code, exc.detail)
        finally:
            expiry.cancel()
            self._sessions.pop(sid, None)
            if counted:
                self.insights.disconnected(zone, error)

    def _expire(self, sid: str) -> None:
        """The stream's token has expired: end it (the zone reconnects with its token file,
        which must hold a fresh token by then)."""
        session = self._sessions.get(sid)
        if session is None or session.withdrawn is not None:
            return
        session.withdrawn = _Refused(
            grpc.StatusCode.UNAUTHENTICATED, "expired",
            f"token {session.claims.token_id} expired while in use; reconnect with a new "
            "zone token")
        log.warning("ending zone %s stream %s: %s", session.zone, sid, session.withdrawn.detail)
        session.task.cancel()

    # -- GlobalToZone -------------------------------------------------------------------

    async def GlobalToZone(self, request_iterator: Any,
                           context: grpc.aio.ServicerContext) -> None:
        await self._run(context, True, self._publish_to_zone)

    async def _publish_to_zone(self, sid: str, stream: Observed) -> None:
        zone = sid.split("#")[0]
        engine = Engine(bounds=ZONE_SYNC_BOUNDS)
        disabled = self._disabled_zones()
        withheld = self._withheld_secrets()

        def visible(type_url: str, item: Item) -> bool:
            if type_url == SECRET_URL:
                return (item.resource.mesh, item.resource.name) not in withheld
            if type_url == INGRESS_URL:
                owner = item.resource.labels.get(ZONE_LABEL)
                return owner != zone and owner not in disabled
            if type_url == ZONE_CERT_URL:  # a zone's intermediate goes to that zone only
                return getattr(item.resource.spec, "zone", None) == zone
            return type_url != ZONE_URL

        def after_change(type_url: str) -> None:
            nonlocal disabled, withheld
            if type_url == ZONE_URL:
                disabled = self._disabled_zones()
                view.refill(INGRESS_URL)
            elif type_url in CREDENTIAL_URLS and withheld != self._withheld_secrets():
                withheld = self._withheld_secrets()
                view.refill(SECRET_URL)

        view = FeedView(self._feed, engine, visible, after_change)
        await publish(engine, sid, stream, view.follow, self._beats)

    def _disabled_zones(self) -> set[str]:
        return disabled_zones(i.resource for i in self._feed.items(ZONE_URL).values())

    def _withheld_secrets(self) -> set[tuple[str, str]]:
        meshes, trusts = (self._feed.items(url).values() for url in CREDENTIAL_URLS)
        return withheld_secrets([i.resource for i in meshes], [i.resource for i in trusts])

    # -- ZoneToGlobal -------------------------------------------------------------------

    async def ZoneToGlobal(self, request_iterator: Any,
                           context: grpc.aio.ServicerContext) -> None:
        await self._run(context, False, self._receive_from_zone)

    async def _receive_from_zone(self, sid: str, stream: Observed) -> None:
        zone = sid.split("#")[0]
        rename = ZoneRename(zone=zone)

        def validate(type_url: str, name: str, entry: Any) -> None:
            res = decode(entry.payload)
            if kind_type_url(res.type) != type_url or resource_key(res) != name:
                raise InvalidResource(f"entry {name!r} does not hold a {type_url}")
            if res.labels.get(ZONE_LABEL) != zone or res.labels.get(ORIGIN_LABEL) != ORIGIN_ZONE:
                raise InvalidResource(f"zone {zone!r} may only publish its own resources "
                                      "(labels gossamer.io/zone and gossamer.io/origin)")

        mirror = Mirror([kind_type_url(k) for k in ZONE_KINDS], validate, node_id="global")
        await load_mirror(mirror, self._store, rename)

        async def on_applied(applied: Applied) -> None:
            await apply_to_store(self._store, applied, rename)

        await subscribe(mirror, stream, on_applied, self._beats)

    # -- Relay ---------------------------------------------------------------------------

    async def Relay(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self._run(context, None, self.relays.serve)

    # -- cutting off access -------------------------------------------------------------

    async def _watch_access(self) -> None:
        """End the streams of revoked tokens and disabled zones as soon as that is stored.

        A zone-token revocation names its token in the event itself, so it costs no read
        and no stored data can make this loop fail; a Zone change rereads the zones."""
        while True:
            try:
                async for event in self._store.watch(await self._store.revision()):
                    res = event.resource
                    if res.type == "Zone":
                        await self._check_access()
                    elif (res.type == "TokenRevocation" and event.type is not EventType.DELETED
                          and isinstance(res.spec, TokenRevocationSpec)
                          and res.spec.purpose == ZONE):
                        self._cut_off_token(res.spec.token_id)
            except RevisionCompacted:
                # Fell behind: what was missed may be a revocation, so check everyone.
                log.warning("access watch fell behind the store's retention; rechecking")
                await self._check_access()
            except GossamerError as exc:  # the store failed the watch: resume and recheck
                log.warning("access watch failed, resuming in 1s: %s", exc.detail)
                await asyncio.sleep(1.0)
                await self._check_access()

    async def _check_access(self) -> None:
        """``_cut_off_withdrawn`` until it succeeds: a check that failed (the store busy or
        down, a concurrent write) may have been the one for a revocation."""
        delay = 0.05
        while True:
            try:
                await self._cut_off_withdrawn()
                return
            except GossamerError as exc:
                log.warning("checking the zones' access failed, retrying in %.2fs: %s",
                            delay, exc.detail)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _cut_off_withdrawn(self) -> None:
        if not self._sessions:
            return
        disabled = disabled_zones((await self._manager.list("Zone")).items)
        for token_id in {s.claims.token_id for s in self._sessions.values()}:
            if await self._is_revoked(token_id):
                self._cut_off_token(token_id)
        for sid, session in list(self._sessions.items()):
            if session.withdrawn is None and session.zone in disabled:
                self._withdraw(sid, session, _Refused(
                    grpc.StatusCode.PERMISSION_DENIED, "disabled",
                    f"zone {session.zone!r} was disabled at the global (Zone.enabled: false)"))

    async def _is_revoked(self, token_id: str) -> bool:
        try:
            await self._manager.get("TokenRevocation", revocation_name(ZONE, "", token_id))
        except NotFound:
            return False
        return True

    def _cut_off_token(self, token_id: str) -> None:
        for sid, session in list(self._sessions.items()):
            if session.withdrawn is None and session.claims.token_id == token_id:
                self._withdraw(sid, session, _Refused(
                    grpc.StatusCode.UNAUTHENTICATED, "revoked",
                    f"token {token_id} was revoked while in use"))

    def _withdraw(self, sid: str, session: _Session, why: _Refused) -> None:
        session.withdrawn = why
        log.warning("ending zone %s stream %s: %s", session.zone, sid, why.detail)
        session.task.cancel()
