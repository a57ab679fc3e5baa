"""The zone's ``ZoneHealth`` report: gathered from its live parts, published to the global.

``assess`` is pure: from the live sidecar sessions and the ADS insights it finds the
proxies NACKing their config (the latest answer to some type was a NACK), the workload
certificates past their renewal point (``zone_cp.cert_status.Health``), and the sidecars
that have no path to ``.mesh`` VIPs (no transparent proxy, and their VIP listeners turned
off by the ``gossamer.io/vip-outbounds: "false"`` label). ``gather`` adds the zone token's
id and expiry (read, unverified, from the token file: the zone only needs to say which
token it dials with; the global judges it), the ingress probes and the zone's clock.

``HealthReporter`` is the shell: it stores the report (synced to the global like every
zone-owned kind) each time the sync link comes up (so the report the global receives
after a reconnect is a fresh one, not the stored one that went first), then every
``interval`` seconds, and at once when ``poke`` is called. A report equal to the last one but
for its time is stored anyway: its time is what the global measures the clock skew with.
A standalone zone stores none: ``gossamer check`` against it gathers the same facts live
(``zone_cp.check_routes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import jwt

from gossamer.errors import GossamerError
from gossamer.model.base import Resource
from gossamer.model.labels import ZONE_LABEL
from gossamer.model.zonehealth import MAX_ITEMS, ProxyProblem, ZoneHealthSpec
from gossamer.resources import ResourceManager
from zone_cp.agent_session import AgentSession
from zone_cp.agents import AgentRegistry
from zone_cp.cert_status import Health
from zone_cp.ingress_probe import probe_all, targets
from zone_cp.mesh_dns import bind_hint, wants_vip_outbounds
from zone_cp.sync_client import ZoneSyncClient
from zone_cp.xds_resources import ProxyInsight

log = logging.getLogger(__name__)

INTERVAL = 30.0


def _cut(items: list[ProxyProblem]) -> tuple[list[ProxyProblem], bool]:
    return items[:MAX_ITEMS], len(items) > MAX_ITEMS


def _nack(insight: ProxyInsight, mesh: str, name: str, cidr: str) -> ProxyProblem:
    kinds = ", ".join(sorted(t.rsplit(".", 1)[-1] for t in insight.tally.nacking))
    detail = f"Envoy refused its {kinds}: {insight.last_nack}"
    return ProxyProblem(mesh=mesh, name=name, detail=detail[:2000],
                        hint=(bind_hint(insight.last_nack, cidr) or "")[:1000])


def assess(sessions: Iterable[AgentSession], insights: Mapping[str, ProxyInsight],
           now: dt.datetime, cidr: str) -> dict[str, list[ProxyProblem] | bool]:
    """The problem lists of a ``ZoneHealthSpec`` (and ``truncated``), from live state."""
    nacking, certificates, no_vip = [], [], []
    for s in sorted(sessions, key=lambda s: (s.mesh, s.name)):
        insight = insights.get(s.node_id)
        if insight is not None and insight.connected and insight.tally.nacking:
            nacking.append(_nack(insight, s.mesh, s.name, cidr))
        health = s.health(now)
        cert = s.certificate
        if health is not None and health is not Health.VALID and cert is not None:
            certificates.append(ProxyProblem(
                mesh=s.mesh, name=s.name,
                detail=f"certificate {cert.serial} is {health.value} (not after "
                       f"{cert.not_after.isoformat()})"))
        if s.spec.networking.transparent_proxying is None and not wants_vip_outbounds(
                s.dataplane):
            no_vip.append(ProxyProblem(
                mesh=s.mesh, name=s.name,
                detail="no transparent proxy and its VIP listeners are off"))
    (nacking, a), (certificates, b), (no_vip, c) = map(_cut, (nacking, certificates, no_vip))
    return {"nacking": nacking, "certificates": certificates, "no_vip_path": no_vip,
            "truncated": a or b or c}


def token_facts(path: Path | None) -> tuple[str, int]:
    """The id and expiry (unix seconds) the zone token in ``path`` claims; ("", 0) if
    there is none or it is not a JWT (the sync reports that failure itself)."""
    if path is None:
        return "", 0
    try:
        claims = jwt.decode(path.read_text().strip(), options={"verify_signature": False})
    except (OSError, jwt.PyJWTError):
        return "", 0
    jti, exp = claims.get("jti"), claims.get("exp")
    return (jti if isinstance(jti, str) else "")[:128], exp if isinstance(exp, int) else 0


async def gather(zone: str, manager: ResourceManager, agents: AgentRegistry,
                 insights: Mapping[str, ProxyInsight], cidr: str,
                 token_file: Path | None,
                 dataplanes: Callable[[], Iterable[Resource]] | None = None
                 ) -> ZoneHealthSpec:
    """This zone's report as of now (it dials the other zones' ingresses: a few seconds
    at most, ``zone_cp.ingress_probe.TIMEOUT``). ``dataplanes``: the zone's Dataplanes as
    it holds them (``MeshState``); without it they are listed from the store, which
    decodes every one of them again (about 4 KiB per sidecar, every report)."""
    ingresses = (await manager.list("ZoneIngress")).items
    probes = await probe_all(targets(ingresses, zone))
    listed = (dataplanes() if dataplanes is not None
              else (await manager.list("Dataplane")).items)
    own = sum(1 for d in listed if d.labels.get(ZONE_LABEL, zone) == zone)
    sessions = list(agents.sessions.values())
    now = dt.datetime.now(dt.UTC)
    token_id, token_expires = token_facts(token_file)
    return ZoneHealthSpec(zone=zone, reported_at=now.isoformat(), token_id=token_id,
                          token_expires_at=token_expires, ingresses=probes[:MAX_ITEMS],
                          dataplanes=own, online=len(sessions),
                          **assess(sessions, insights, now, cidr))


class HealthReporter:
    """Stores this zone's ``ZoneHealth`` for the global (federated zones only)."""

    def __init__(self, zone: str, manager: ResourceManager, agents: AgentRegistry,
                 insights: Mapping[str, ProxyInsight], cidr: str, token_file: Path | None,
                 sync: ZoneSyncClient,
                 dataplanes: Callable[[], Iterable[Resource]] | None = None) -> None:
        self._args = (zone, manager, agents, insights, cidr, token_file, dataplanes)
        self._manager = manager
        self._sync = sync
        self._poked = asyncio.Event()
        sync.on_connected.append(self.poke)  # a fresh clock reading after each reconnect
        self.interval = INTERVAL
        self.reports = 0

    def poke(self) -> None:
        """Report now (not waiting for the interval)."""
        self._poked.set()

    async def run(self) -> None:
        while True:
            await self._sync.connected.wait()
            self._poked.clear()
            try:
                await self.report()
            except GossamerError as exc:  # the store: the next round tries again
                log.warning("zone health report not stored: %s", exc.detail)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.interval)

    async def report(self) -> None:
        spec = await gather(*self._args)
        await self._manager.apply(Resource(type="ZoneHealth", name=spec.zone, spec=spec))
        self.reports += 1
