"""The zone's side of the zone sync: dial the global, keep both streams alive.

``GlobalToZone``: a ``Mirror`` of what the global publishes, rebuilt from the zone's
store at every connect (so a reconnect receives only what it missed) and written to the
store before each ACK. ``ZoneToGlobal``: an ``Engine`` publishing the zone's own
Dataplanes and ZoneIngresses, labelled with the zone and origin.

Beside them, once the link is in sync, ``Relay`` (``zone_cp.inspect_relay.serve_relay``)
answers the global's ``inspect`` requests on the same channel (a refused zone opens no
third stream); its failures never end the sync streams.

Either stream failing ends both; the client re-dials with exponential backoff and
jitter. With several ``--global`` addresses (the global's replicas) it dials them in turn
(``gossamer.failover``): a refused dial or a broken stream moves to the next address
after a short pause, and the backoff grows only once every address has failed in a row.
Whichever replica it reaches, the ``Mirror`` is rebuilt from the zone's store, so the
zone receives only what it missed. A name with several address records is dialled by
gRPC's own resolver, which tries each record in turn (pick-first).

A refusal by the global (bad token, disabled zone) is logged with the global's
reason and backed off the same way; ``status`` says what happened last. A global whose
certificate does not verify is reported as the address dialled and the flag that fixes
it (``--tls-host`` at the global, or the right ``--global-ca``:
``gossamer.pki.dial_errors``), not gRPC's "Hostname Verification Check failed".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import grpc

import gossamer
from gossamer.errors import GossamerError
from gossamer.failover import Failover
from gossamer.model.base import Resource
from gossamer.model.labels import ORIGIN_LABEL, ORIGIN_ZONE, ZONE_LABEL
from gossamer.pki.dial_errors import explain, verify_failure
from gossamer.resources import ResourceManager
from gossamer.settings import ZoneSettings
from gossamer.store.view import StoreView
from sync.applier import Decoded, Rename, apply_to_store, load_mirror
from sync.client_state import Applied, Mirror
from sync.codec import kind_type_url
from sync.engine import Engine
from sync.feed import FeedView, StoreFeed, strip_meta
from sync.stream import Heartbeats, StreamStalled, publish, subscribe
from sync.v1 import sync_pb2_grpc
from sync.zone_link import ADMITTED, GLOBAL_KINDS, GRPC_OPTIONS, ZONE_KINDS, ZONE_METADATA
from zone_cp.inspect_relay import EnvoyInspector, serve_relay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Redial:
    """When to dial again after a failure: ``initial`` doubling up to ``maximum`` (each
    delay jittered to 50-150%); a connection that lasted ``healthy_after`` resets it."""

    initial: float = 0.5
    maximum: float = 30.0
    healthy_after: float = 10.0


ADMISSION_TIMEOUT = 10.0  # at least this long for the global to admit or refuse a stream


class SyncConfigError(GossamerError):
    http_status = 400
    title = "invalid sync configuration"
    caller_fault = True


@dataclass
class SyncStatus:
    """What the sync with the global is doing, read by ``/_check`` and ``/metrics``
    (``zone_cp.sync_metrics``). Only the replica holding the zone's lease runs the sync;
    on the others ``running`` is False and ``streams`` 0."""

    connected: bool = False
    attempts: int = 0
    last_error: str = ""
    running: bool = False  # this replica runs the sync now (the zone's leader)
    streams: int = 0       # streams to the global the global has admitted, live now
    applied: int = 0       # updates from the global written to the zone's store


async def _channel_credentials(settings: ZoneSettings, host: str,
                               port: int) -> tuple[Any, list[Any]]:
    if settings.global_ca is not None:
        return grpc.ssl_channel_credentials(settings.global_ca.read_bytes()), []
    if not settings.insecure_skip_verify:
        raise SyncConfigError("refusing to connect to the global without --global-ca; pass "
                              "the global's CA file or, knowingly, --insecure-skip-verify")
    # Skip verification by trusting whatever certificate the global presents right now
    # (fetched on a thread: a global that does not answer must not stall this loop).
    pem = await asyncio.to_thread(ssl.get_server_certificate, (host, port), timeout=10)
    return (grpc.ssl_channel_credentials(pem.encode()),
            [("grpc.ssl_target_name_override", "localhost")])


def parse_global_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "grpcs" or not parts.hostname or not parts.port:
        raise SyncConfigError(f"--global must look like grpcs://HOST:PORT, got {url!r}")
    return parts.hostname, parts.port


def _own(zone: str, res: Resource) -> Resource | None:
    """The zone publishes its own resources only (synced-in ones carry an origin)."""
    if ORIGIN_LABEL in res.labels:
        return None
    return strip_meta(replace(res, labels={**res.labels, ZONE_LABEL: zone,
                                           ORIGIN_LABEL: ORIGIN_ZONE}))


class ZoneSyncClient:
    def __init__(self, settings: ZoneSettings, manager: ResourceManager,
                 rng: random.Random | None = None,
                 inspector: EnvoyInspector | None = None,
                 view: StoreView | None = None) -> None:
        self._settings = settings
        self._inspector = inspector
        self._store = manager.store
        self._rng = rng or random.Random()
        self._beats = Heartbeats(settings.heartbeat_interval, settings.heartbeat_timeout)
        # Fed by the zone's view when it keeps one (as the global's feed is): the feed's
        # copies then share the view's decoded specs, where a watch of its own decoded
        # every Dataplane a second time (about 4 KiB per connected sidecar).
        self._feed = StoreFeed(view or self._store, ZONE_KINDS,
                               lambda r: _own(settings.zone, r))
        self.status = SyncStatus()
        self.connected = asyncio.Event()
        self.redial = Redial()  # read at each failure: tests may shorten it once started
        # Called each time the link comes up (in sync again): what reports on reconnect.
        self.on_connected: list[Callable[[], None]] = []

    def _token(self) -> str:
        if self._settings.token_file is None:
            raise SyncConfigError("a federated zone needs --token-file")
        token = self._settings.token_file.read_text().strip()
        if not token:
            raise SyncConfigError(f"the token file {self._settings.token_file} is empty")
        return token

    async def run(self) -> None:
        feed = asyncio.create_task(self._feed.run(), name="zone-feed")
        order = Failover(self._settings.global_urls or ("",))
        delay = self.redial.initial
        loop = asyncio.get_running_loop()
        self.status.running = True
        try:
            await self._feed.ready.wait()
            while True:
                started = loop.time()
                self.status.attempts += 1
                url = order.current
                try:
                    await self._connect_once(url)
                except SyncConfigError as exc:
                    self.status.last_error = exc.detail  # retrying cannot help: say why
                    raise
                except (grpc.aio.AioRpcError, GossamerError, OSError) as exc:
                    self.status.last_error = _describe(exc, self._settings, url)
                    log.warning("zone %s: sync with the global at %s failed: %s",
                                self._settings.zone, url, self.status.last_error)
                finally:
                    self.status.connected = False
                    self.connected.clear()
                if loop.time() - started > self.redial.healthy_after:
                    delay = self.redial.initial
                    order.succeeded()
                # Another replica next; the backoff only once all of them failed in a row.
                round_failed = order.failed()
                pause = min(delay, self.redial.maximum) if round_failed else self.redial.initial
                await asyncio.sleep(pause * (0.5 + self._rng.random()))
                if round_failed:
                    delay = min(delay * 2, self.redial.maximum)
        finally:
            self.status.running = False
            feed.cancel()

    async def _connect_once(self, url: str) -> None:
        s = self._settings
        host, port = parse_global_url(url)
        creds, options = await _channel_credentials(s, host, port)
        metadata = (("authorization", f"Bearer {self._token()}"), (ZONE_METADATA, s.zone),
                    ("gossamer-version", gossamer.__version__))
        async with grpc.aio.secure_channel(f"{host}:{port}", creds,
                                           options=GRPC_OPTIONS + options,
                                           compression=grpc.Compression.Gzip) as channel:
            stub = sync_pb2_grpc.ZoneSyncStub(channel)
            down = stub.GlobalToZone(metadata=metadata)
            up = stub.ZoneToGlobal(metadata=metadata)
            tasks = [asyncio.create_task(self._receive(down)),
                     asyncio.create_task(self._publish(up))]
            relay = (asyncio.create_task(self._relay(channel, metadata, self._inspector))
                     if self._inspector is not None else None)
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                for task in tasks if relay is None else [*tasks, relay]:
                    task.cancel()
                await asyncio.gather(*tasks, *[relay] if relay else [], return_exceptions=True)
                down.cancel()
                up.cancel()

    async def _relay(self, channel: grpc.aio.Channel, metadata: Any,
                     inspector: EnvoyInspector) -> None:
        await self.connected.wait()  # admitted and in sync: the global will take it too
        await serve_relay(channel, metadata, inspector)

    async def _admitted(self, call: Any) -> None:
        """Wait for the global's verdict on a new stream before writing to it: its
        ``gossamer-admitted`` metadata, or the refusal's status (with the reason)."""
        try:
            async with asyncio.timeout(max(self._beats.timeout or 0.0, ADMISSION_TIMEOUT)):
                metadata = await call.initial_metadata()
                if metadata is not None and ADMITTED in metadata:
                    return
                await call.read()  # a refused stream: raises its status
        except TimeoutError:
            raise StreamStalled("the global did not answer the stream's admission") from None
        raise StreamStalled("the global ended the stream without admitting it")

    @contextlib.asynccontextmanager
    async def _admitted_stream(self, call: Any) -> AsyncIterator[None]:
        """Once the global admitted ``call``: counted in ``status.streams`` while it lives."""
        await self._admitted(call)
        self.status.streams += 1
        try:
            yield
        finally:
            self.status.streams -= 1

    async def _receive(self, call: Any) -> None:
        async with self._admitted_stream(call):
            await self._mirror(call)

    async def _mirror(self, call: Any) -> None:
        kinds = [*GLOBAL_KINDS, "ZoneIngress"]
        decoded = Decoded()  # each entry decoded once, in slices (sync.applier)
        mirror = Mirror([kind_type_url(k) for k in kinds], decoded.validate,
                        node_id=self._settings.zone)
        rename = Rename()
        await load_mirror(mirror, self._store, rename)

        async def on_applied(applied: Applied) -> None:
            await apply_to_store(self._store, applied, rename, decoded=decoded)
            self.status.applied += 1
            if not self.status.connected:
                self.status.connected = True
                self.connected.set()
                log.info("zone %s: in sync with the global", self._settings.zone)
                for listener in self.on_connected:
                    listener()

        await subscribe(mirror, call, on_applied, self._beats, prepare=decoded.prepare)

    async def _publish(self, call: Any) -> None:
        async with self._admitted_stream(call):
            engine = Engine()
            view = FeedView(self._feed, engine)
            await publish(engine, "global", call, view.follow, self._beats)


def _describe(exc: BaseException, settings: ZoneSettings, url: str) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        details = exc.details() or ""
        failure = (verify_failure(details) if exc.code() == grpc.StatusCode.UNAVAILABLE
                   else None)
        if failure is not None and url:
            host, port = parse_global_url(url)
            ca = str(settings.global_ca) if settings.global_ca else None
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            return explain(failure, target, host, "--global-ca", ca)
        return f"{exc.code().name}: {details}"
    if isinstance(exc, GossamerError):
        return exc.detail
    return str(exc)
