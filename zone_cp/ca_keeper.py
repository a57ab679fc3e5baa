"""The zone CA's singleton work, on the zone's leader only: intermediates and the report.

Zone CP replicas share one store; each signs with the stored intermediate
(``zone_cp.ca.ZoneCa``), and one of them, the holder of the zone's lease, keeps it:

* per mesh, makes the intermediate's key, requests its certificate from the owner of the
  mesh roots and rotates it a third before expiry (``zone_cp.intermediates``), writing
  through the store view the lease fences (``gossamer.election``), so a replica that lost
  the lease cannot write CA state even if it still runs;
* publishes the zone's one ``ZoneTrustStatus`` per mesh: its own replica's census (the
  sidecars connected to it) plus that of every other live replica, from their records
  (``zone_cp.replicas``). A replica whose record stopped moving no longer counts: its
  sidecars are reconnecting elsewhere and are counted there.

After its term starts, for ``startup_grace`` seconds (the zone's ``agent_grace``), a
report that would count fewer sidecars than the stored one is held back: after a
restart or a takeover the sidecars are still coming back, and reporting only those
would let a rotation count the others as done. Time is injectable (``clock``), so a test
can move the keeper to its intermediate's renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from gossamer.errors import GossamerError, NotFound
from gossamer.model.base import Resource
from gossamer.model.meshtrust import MeshTrustSpec
from gossamer.model.zonecertificate import ZoneCertificateSpec
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.resources import ResourceManager
from gossamer.store.follow import follow
from zone_cp.ca import REPORT_DEBOUNCE, WATCHED, ZoneCa
from zone_cp.intermediates import Intermediates
from zone_cp.leftovers import LEFTOVER_GRACE
from zone_cp.replicas import RECORD_KIND, ReplicaRecords

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def merged(own: ZoneTrustStatusSpec, others: Sequence[ZoneTrustStatusSpec]) -> ZoneTrustStatusSpec:
    """The zone's report for one mesh: ``own`` (the keeper's replica) plus the censuses
    other live replicas stored. A replica that knows another bundle than ``own``'s has
    none of its sidecars counted as serving the current one."""
    dataplanes, with_bundle = own.dataplanes, own.dataplanes_with_bundle
    certificates = Counter(own.certificates)
    error = own.issuance_error
    for other in others:
        dataplanes += other.dataplanes
        if other.bundle_digest == own.bundle_digest:
            with_bundle += other.dataplanes_with_bundle
        certificates.update(other.certificates)
        error = error or other.issuance_error
    return own.model_copy(
        update={
            "dataplanes": dataplanes,
            "dataplanes_with_bundle": with_bundle,
            "certificates": dict(sorted(certificates.items())[:16]),
            "issuance_error": error,
        }
    )


class ZoneCaKeeper:
    def __init__(
        self,
        leader: ResourceManager,
        ca: ZoneCa,
        zone: str,
        records: ReplicaRecords | None = None,
        startup_grace: float = LEFTOVER_GRACE,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        """``leader``: the store view fenced by the zone's lease; ``ca``: this replica's
        signer, whose census is the keeper's own; ``records``: the other replicas'
        censuses (None without replicas)."""
        self._manager = leader
        self._ca = ca
        self._zone = zone
        self._records = records
        self._intermediates = Intermediates(leader, zone)
        self.startup_grace = startup_grace
        self.clock = clock
        self._term_started = time.monotonic()

    async def run(self) -> None:
        """One term: keep the intermediates and the report up to date until cancelled."""
        self._term_started = time.monotonic()
        wake = asyncio.Event()
        kinds = [*WATCHED, RECORD_KIND] if self._records is not None else WATCHED
        watcher = asyncio.create_task(
            follow(
                self._manager.store, kinds, lambda _: wake.set(), lambda _res, _deleted: wake.set()
            )
        )
        self._ca.census_listeners.append(wake.set)
        try:
            while True:
                wake.clear()
                try:
                    next_check = await self.reconcile(self.clock())
                except GossamerError as exc:  # the store, or our lease ended: retry
                    log.warning("zone %s: CA keeper pass failed: %s", self._zone, exc.detail)
                    next_check = self.clock() + dt.timedelta(seconds=2)
                timeout = (next_check - self.clock()).total_seconds()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(max(timeout, 1.0), 3600)):
                        await wake.wait()
                await asyncio.sleep(REPORT_DEBOUNCE)
        finally:
            self._ca.census_listeners.remove(wake.set)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def reconcile(self, now: dt.datetime) -> dt.datetime:
        """Keep every mesh's intermediate, then report; returns when to look again."""
        next_check = now + dt.timedelta(hours=1)
        meshes = [m.name for m in (await self._manager.list("Mesh")).items]
        certs = {
            r.spec.mesh: r.spec
            for r in (await self._manager.list("ZoneCertificate")).items
            if isinstance(r.spec, ZoneCertificateSpec) and r.spec.zone == self._zone
        }
        for mesh in meshes:
            try:
                next_check = min(
                    next_check, await self._intermediates.reconcile(mesh, certs.get(mesh), now)
                )
            except GossamerError:
                raise  # the store or the fence: the whole pass is retried
            except Exception:  # one mesh's bad state must not stop the others
                log.exception(
                    "zone %s: the intermediate of mesh %s failed; retrying", self._zone, mesh
                )
                next_check = min(next_check, now + dt.timedelta(seconds=5))
        trusts = await self._ca.refresh()  # what the keeper just stored, signed with here
        others: list[ZoneTrustStatusSpec] = []
        if self._records is not None:
            others = await self._records.others()
            # A replica that dies stops writing: nothing wakes us, so look again.
            next_check = min(next_check, now + dt.timedelta(seconds=self._records.every))
        for mesh in meshes:
            if await self._report(mesh, trusts.get(mesh), others, now):
                held = self.startup_grace - (time.monotonic() - self._term_started)
                next_check = min(next_check, now + dt.timedelta(seconds=max(held, 0.5)))
        return next_check

    async def _report(
        self,
        mesh: str,
        trust: MeshTrustSpec | None,
        others: Sequence[ZoneTrustStatusSpec],
        now: dt.datetime,
    ) -> bool:
        """Store the zone's status for ``mesh`` if it changed; True if it is held back
        (see ``startup_grace``)."""
        status = merged(self._ca.status(mesh, trust), [o for o in others if o.mesh == mesh])
        with contextlib.suppress(NotFound):
            stored = (await self._manager.get("ZoneTrustStatus", mesh)).spec
            if (
                isinstance(stored, ZoneTrustStatusSpec)
                and stored.model_copy(update={"updated_at": ""}) == status
            ):
                return False
            if (
                isinstance(stored, ZoneTrustStatusSpec)
                and status.dataplanes < stored.dataplanes
                and time.monotonic() - self._term_started < self.startup_grace
            ):
                return True
        status = status.model_copy(update={"updated_at": now.isoformat(timespec="seconds")})
        await self._manager.apply(Resource(type="ZoneTrustStatus", name=mesh, spec=status))
        return False
