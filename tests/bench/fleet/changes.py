"""The changes the fleet benchmark applies, and how each is timed.

Every change carries a value no other change uses (a connect timeout of ``10001ms``,
``10002ms``, ...; an endpoint address), so the workers' watches see it arrive by decoding
what the simulated Envoys hold. A change is timed from the global API's answer (an
endpoint: from the extra sidecar's registration or its Session's end) until the last
affected proxy of a zone ACKed it, per zone; the change's sample is the slowest zone.
The reference in the same run is the time until every zone's store holds the change (read
from its SQLite file, not through the zone CP's API, whose answers wait for the same busy
loop): what the global's store watch and the zone sync cost, so the ratio isolates the
zone CP's regeneration and ADS.

- ``one_service``: ``MeshTimeout fleet-one-K`` with ``targetRef: MeshService S`` and a
  ``to[]`` over the mesh: S's proxies see every outbound cluster's connect timeout change.
  It is deleted afterwards, and the proxies' return to the mesh-wide value awaited (timed
  apart, as ``one_service_delete``).
- ``mesh_wide``: ``MeshTimeout fleet-mesh`` (``targetRef: Mesh``) updated: every proxy.
- ``endpoint``: one more sidecar of S registered in every zone, then its Session ended:
  the proxies with S among their outbounds see the address come and go in S's load
  assignment. Both directions are samples.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from gossamer.store import SQLITE_FILE
from tests.bench.fleet import stats
from tests.bench.fleet.link import WorkerLink
from tests.bench.fleet.processes import ControlPlane

DEADLINE = 120.0
POLL = 0.005
TIMEOUTS = "/meshes/default/meshtimeouts"


def timeout_doc(name: str, ms: int, service: str | None) -> dict[str, Any]:
    target = {"kind": "MeshService", "name": service} if service else {"kind": "Mesh"}
    return {"type": "MeshTimeout", "name": name, "mesh": "default", "spec": {
        "targetRef": target,
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": f"{ms}ms"}}]}}


@dataclass
class Samples:
    """Seconds per change (the slowest zone), per zone, and the reference's."""

    all_zones: list[float] = field(default_factory=list)
    per_zone: list[float] = field(default_factory=list)
    by_zone: dict[str, list[float]] = field(default_factory=dict)
    reference: list[float] = field(default_factory=list)
    affected: list[int] = field(default_factory=list)
    missed: int = 0  # changes some proxy had not ACKed by the deadline
    # CPU seconds each kind of process used from the change until every zone was done
    cpu: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Runner:
    global_cp: ControlPlane
    zones: list[ControlPlane]
    links: list[WorkerLink]
    services: list[str]
    http: httpx.AsyncClient
    samples: dict[str, Samples] = field(default_factory=dict)
    mesh_ms: int = 0
    _dbs: dict[str, sqlite3.Connection] = field(default_factory=dict)
    _values: itertools.count[int] = field(default_factory=lambda: itertools.count(10_001))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _record(self, kind: str) -> Samples:
        return self.samples.setdefault(kind, Samples())

    async def put(self, doc: dict[str, Any]) -> float:
        """PUT ``doc`` at the global; the monotonic time of its answer. A 409 (another PUT
        of the same resource won the race) is tried again, as a client would."""
        while True:
            r = await self.http.put(f"{self.global_cp.api}{TIMEOUTS}/{doc['name']}",
                                    json=doc, headers=self.global_cp.headers)
            if r.status_code != 409:
                r.raise_for_status()
                return time.monotonic()

    async def delete(self, name: str) -> float:
        r = await self.http.delete(f"{self.global_cp.api}{TIMEOUTS}/{name}",
                                   headers=self.global_cp.headers)
        r.raise_for_status()
        return time.monotonic()

    async def _stored(self, zone: ControlPlane, kind: str, name: str,
                      check: Callable[[str | None], bool], since: float) -> float:
        """Seconds from ``since`` until ``zone``'s store holds ``name`` as ``check`` wants
        (its spec JSON, None when absent), read from its SQLite file: the zone sync's
        share, seen without asking the zone CP's busy loop."""
        db = self._dbs.get(zone.name)
        if db is None:
            db = self._dbs[zone.name] = sqlite3.connect(
                f"file:{zone.data_dir / SQLITE_FILE}?mode=ro", uri=True)
        until = time.monotonic() + DEADLINE
        while time.monotonic() < until:
            row = db.execute("SELECT spec FROM resources WHERE kind = ? AND mesh = ? AND "
                             "name = ?", (kind, "default", name)).fetchone()
            if check(None if row is None else row[0]):
                return time.monotonic() - since
            await asyncio.sleep(POLL)
        return DEADLINE

    async def _timed(self, kind: str, watch: dict[str, Any],
                     apply: Callable[[], Awaitable[float]],
                     reference: Callable[[ControlPlane, float], Awaitable[float]]) -> None:
        """Arm ``watch`` in every worker, ``apply`` the change, wait for every zone."""
        watch = {**watch, "cmd": "watch", "id": f"w{next(self._ids)}"}
        for link in self.links:
            await link.send(watch)
        armed = [await link.wait("armed", watch["id"], DEADLINE) for link in self.links]
        cpu_before = self._cpu()
        t_api = await apply()
        refs = asyncio.gather(*(reference(z, t_api) for z in self.zones))
        samples = self._record(kind)
        per_zone = []
        for link, arm in zip(self.links, armed, strict=True):
            try:
                seconds = (await link.wait("done", watch["id"], DEADLINE))["last"] - t_api
            except TimeoutError:
                samples.missed += 1
                await link.send({"cmd": "cancel", "id": watch["id"]})
                seconds = DEADLINE
            if arm["affected"]:
                per_zone.append(seconds)
                samples.by_zone.setdefault(link.zone, []).append(seconds)
        cpu_after = self._cpu()
        samples.cpu.append({k: cpu_after[k] - v for k, v in cpu_before.items()})
        samples.per_zone += per_zone
        samples.all_zones.append(max(per_zone, default=0.0))
        samples.reference.append(max(await refs))
        samples.affected.append(sum(a["affected"] for a in armed))

    def _policy_ref(self, name: str, ms: int | None) -> Callable[[ControlPlane, float],
                                                                  Awaitable[float]]:
        def check(spec: str | None) -> bool:
            if ms is None:
                return spec is None
            return spec is not None and json.loads(spec)["to"][0]["default"][
                "connectionTimeout"] == f"{ms}ms"
        return lambda zone, since: self._stored(zone, "MeshTimeout", name, check, since)

    async def mesh_wide(self, record: str = "mesh_wide") -> None:
        ms = self.mesh_ms = next(self._values)
        await self._timed(record, {"kind": "timeout", "service": None, "ms": ms},
                          lambda: self.put(timeout_doc("fleet-mesh", ms, None)),
                          self._policy_ref("fleet-mesh", ms))

    async def one_service(self, k: int) -> None:
        service, name, ms = self.services[k % len(self.services)], f"fleet-one-{k}", next(
            self._values)
        await self._timed("one_service", {"kind": "timeout", "service": service, "ms": ms},
                          lambda: self.put(timeout_doc(name, ms, service)),
                          self._policy_ref(name, ms))
        await self._timed("one_service_delete",
                          {"kind": "timeout", "service": service, "ms": self.mesh_ms},
                          lambda: self.delete(name), self._policy_ref(name, None))

    async def endpoint(self, k: int) -> None:
        """One more sidecar of a service in every zone, then gone; per zone at once."""
        service = self.services[(k * 7 + 3) % len(self.services)]
        await asyncio.gather(*(self._endpoint_in(i, k, service)
                               for i in range(len(self.zones))))

    async def _endpoint_in(self, i: int, k: int, service: str) -> None:
        link, zone = self.links[i], self.zones[i]
        name, address = f"{zone.name}-extra-{k}", f"10.254.{i}.{k % 250 + 1}"
        for present in (True, False):
            wid = f"w{next(self._ids)}"
            await link.send({"cmd": "watch", "id": wid, "kind": "endpoint",
                             "service": service, "address": f"{address}:18080",
                             "present": present})
            arm = await link.wait("armed", wid, DEADLINE)
            if present:
                await link.send({"cmd": "add", "name": name, "service": service,
                                 "address": address})
                t0 = (await link.wait("added", name, DEADLINE))["t0"]
            else:
                await link.send({"cmd": "remove", "name": name})
                t0 = (await link.wait("removed", name, DEADLINE))["t0"]
            ref = await self._stored(zone, "Dataplane", name,
                                     lambda spec, p=present: (spec is not None) == p, t0)
            samples = self._record("endpoint")
            try:
                done = await link.wait("done", wid, DEADLINE)
                samples.per_zone.append(done["last"] - t0)
            except TimeoutError:
                samples.missed += 1
                await link.send({"cmd": "cancel", "id": wid})
                samples.per_zone.append(DEADLINE)
            samples.all_zones.append(samples.per_zone[-1])
            samples.by_zone.setdefault(link.zone, []).append(samples.per_zone[-1])
            samples.reference.append(ref)
            samples.affected.append(arm["affected"])

    def _cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the zone CPs, the workers (the simulated sidecars)
        and the global, each kind summed over its processes."""
        return {"zone_cps": sum(stats.cpu_seconds(z.proc.pid) for z in self.zones),
                "workers": sum(stats.cpu_seconds(k.proc.pid) for k in self.links),
                "global": stats.cpu_seconds(self.global_cp.proc.pid)}

    async def _counts(self) -> list[dict[str, int]]:
        for link in self.links:
            await link.send({"cmd": "counts"})
        return [(await link.wait("counts", "", DEADLINE))["responses"] for link in self.links]

    async def burst(self, count: int, seconds: float = 1.0) -> dict[str, Any]:
        """``count`` updates of the mesh-wide MeshTimeout sent ``seconds / count`` apart
        without waiting for each answer (the global may take them in any order): ADS
        responses per proxy over the burst (each regeneration that changed a proxy's
        clusters is one) and the time until every proxy ACKed the value the global ended
        with. That value is known only once every answer is in, so its watch is armed
        then; a proxy already holding it counts as done at arming (an upper bound)."""
        values = [next(self._values) for _ in range(count)]
        before = await self._counts()
        t_first = time.monotonic()

        async def send(j: int, ms: int) -> float:
            await asyncio.sleep(max(0.0, t_first + j * seconds / count - time.monotonic()))
            return await self.put(timeout_doc("fleet-mesh", ms, None))

        t_last = max(await asyncio.gather(*(send(j, ms) for j, ms in enumerate(values))))
        r = await self.http.get(f"{self.global_cp.api}{TIMEOUTS}/fleet-mesh",
                                headers=self.global_cp.headers)
        final = int(r.json()["spec"]["to"][0]["default"]["connectionTimeout"][:-2])
        self.mesh_ms = final
        wid = f"w{next(self._ids)}"
        for link in self.links:
            await link.send({"cmd": "watch", "id": wid, "kind": "timeout", "service": None,
                             "ms": final, "held_is_done": True})
        lasts = [(await link.wait("done", wid, DEADLINE * 3))["last"] for link in self.links]
        after = await self._counts()
        per_proxy = [a[name] - b.get(name, 0) for a, b in zip(after, before, strict=True)
                     for name in a]
        return {"changes": count, "sent_in_s": round(t_last - t_first, 3),
                "last_acked_after_last_answer_ms": round((max(lasts) - t_last) * 1000, 1),
                "last_acked_after_first_change_ms": round((max(lasts) - t_first) * 1000, 1),
                "responses_per_proxy_mean": round(sum(per_proxy) / len(per_proxy), 2),
                "responses_per_proxy_max": max(per_proxy)}
