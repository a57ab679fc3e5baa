"""The chaos scenario the test and ``tests/bench/bench_chaos.py`` share.

``run_chaos`` waits for the topology (``chaos_env``) to carry calls, starts the load
(``chaos_load``) and then: kill -9 the global leader, then east's zone CP leader, then
a global replica and a west zone CP replica that do not lead, then stop PostgreSQL for
``PG_DOWN`` seconds; each killed process is started again on its data and ports before
the next fault. It returns a ``Report``: the time to a new leader per fault, the writes
refused during each, the failed calls, and how long everything took to converge after
the last write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.integration.chaos_env import ZONES, ControlPlane, Topology, wait
from tests.integration.chaos_load import SEQ_LABEL, Traffic, Writer

NEW_LEADER_WITHIN = 15.0  # issue 15's bound
PG_DOWN = 10.0


# -- the scenario ------------------------------------------------------------------------


@dataclass
class Fault:
    what: str
    began: float  # monotonic
    new_leader_s: float  # from the fault (for PostgreSQL: from its return) to a leader
    leaders_after: dict[str, str]  # lease scope -> who leads once it is over
    ended: float = 0.0  # when the next fault began (or the writer stopped)

    def refused(self, writer: Writer) -> dict[str, int]:
        """Failed write attempts while the fault lasted, by kind (``Write.refuse``)."""
        kinds: dict[str, int] = {}
        for w in writer.writes:
            for at, kind, _ in w.refusals:
                if self.began <= at < self.ended:
                    kinds[kind] = kinds.get(kind, 0) + 1
        return kinds

    def failed_calls(self, traffic: Traffic) -> int:
        return sum(self.began <= c.at < self.ended for c in traffic.failures())


def kinds(counts: dict[str, int]) -> str:
    """``3 unreachable, 12 503`` (or ``0``)."""
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "0"


@dataclass
class Report:
    faults: list[Fault]
    writer: Writer
    traffic: Traffic
    convergence_s: float  # from the last write to every replica and zone holding it
    overviews: list[Any]  # /zones/_overviews of each global replica at the end
    setup_s: float  # from the start of ``up`` to the first call answered and zones online
    faults_s: float  # from the first fault to the last write

    def summary(self) -> str:
        lines = [
            "| fault | new leader after s | writes refused | failed calls |",
            "|---|---:|---:|---:|",
        ]
        for f in self.faults:
            lines.append(
                f"| {f.what} | {f.new_leader_s:.2f} | {kinds(f.refused(self.writer))} | "
                f"{f.failed_calls(self.traffic)} |"
            )
        landed = sum(w.landed for w in self.writer.writes)
        acked = sum(w.acked for w in self.writer.writes)
        lines.append(
            f"\nwrites: {len(self.writer.writes)} sent, {acked} answered 2xx, "
            f"{landed} stored; calls: {len(self.traffic.calls)}, "
            f"{len(self.traffic.failures())} failed; converged "
            f"{self.convergence_s:.2f} s after the last write\n"
            f"set up in {self.setup_s:.1f} s, faults and writes for "
            f"{self.faults_s:.1f} s"
        )
        return "\n".join(lines)


def _progress(writer: Writer, more: int, what: str) -> None:
    """Wait until ``more`` further writes have been answered 2xx."""
    target = sum(w.acked for w in writer.writes) + more
    wait(
        lambda: sum(w.acked for w in writer.writes) >= target,
        60,
        f"{more} more acknowledged writes {what}",
    )


def _who(env: Topology) -> dict[str, str]:
    scopes = {"global": env.globals, **env.zones}
    return {scope: getattr(env.leader(cps), "name", "none") for scope, cps in scopes.items()}


def _new_leader(cps: list[ControlPlane], not_: ControlPlane | None) -> ControlPlane:
    def one() -> ControlPlane | None:
        leading = [cp for cp in cps if cp is not not_ and cp.leading()]
        return leading[0] if len(leading) == 1 else None

    found: ControlPlane = wait(one, NEW_LEADER_WITHIN, "a new leader", interval=0.05)
    return found


def _kill_leader(env: Topology, cps: list[ControlPlane], what: str) -> Fault:
    leader = wait(lambda: env.leader(cps), NEW_LEADER_WITHIN, f"one {what} leader")
    began = time.monotonic()
    leader.kill()
    _new_leader(cps, leader)
    fault = Fault(f"kill -9 the {what} leader", began, time.monotonic() - began, {})
    leader.start()
    fault.leaders_after = _who(env)
    return fault


def _kill_followers(env: Topology) -> Fault:
    """kill -9 a global replica and a west zone CP replica that do not lead."""
    before = _who(env)
    victims = [
        next(cp for cp in env.globals if cp.name != before["global"]),
        next(cp for cp in env.zones["west"] if cp.name != before["west"]),
    ]
    began = time.monotonic()
    for cp in victims:
        cp.kill()
    # The leaders must stay the leaders: "a new leader" is the one there was.
    wait(lambda: _who(env) == before, NEW_LEADER_WITHIN, f"the leaders {before} to stay")
    fault = Fault(
        "kill -9 a global and a west zone CP replica that do not lead",
        began,
        time.monotonic() - began,
        {},
    )
    for cp in victims:
        cp.start()
    fault.leaders_after = _who(env)
    return fault


def _stop_postgres(env: Topology) -> Fault:
    assert env.pg is not None
    began = time.monotonic()
    env.pg.stop()
    time.sleep(PG_DOWN)  # the outage itself: its length is the fault, nothing is awaited
    env.pg.start()
    back = time.monotonic()
    wait(
        lambda: "none" not in _who(env).values(),
        NEW_LEADER_WITHIN,
        "a leader of the global and of each zone",
    )
    return Fault(f"stop PostgreSQL for {PG_DOWN:g} s", began, time.monotonic() - back, _who(env))


def holds(env: Topology, expected: dict[str, tuple[int, int]]) -> list[str]:
    """What differs from ``expected`` at any global replica or zone CP replica."""
    wrong = []
    for cp in env.everything():
        for name, (version, seq) in expected.items():
            r = cp.get(f"/meshes/default/meshtimeouts/{name}")
            if r.status_code != 200:
                wrong.append(f"{cp.name}: {name} -> {r.status_code}")
                continue
            doc = r.json()
            if doc["labels"].get(SEQ_LABEL) != str(seq):
                wrong.append(
                    f"{cp.name}: {name} holds write {doc['labels'].get(SEQ_LABEL)}, not {seq}"
                )
            if cp.lease == "global" and doc["version"] != version:
                wrong.append(
                    f"{cp.name}: {name} at version {doc['version']}, {version - 1} writes landed"
                )
    return wrong


def overviews(env: Topology) -> list[Any]:
    """Every global replica's ``/zones/_overviews``, once they are all the same and show
    both zones online (until then an ``AssertionError`` with what each answered)."""
    seen = [cp.get("/zones/_overviews").json() for cp in env.globals]
    online = {item["name"]: item["insight"]["status"] for item in seen[0]["items"]}
    if all(s == seen[0] for s in seen) and all(online.get(z) == "Online" for z in ZONES):
        return seen
    raise AssertionError(f"zone overviews: {seen}")  # what the deadline reports


def run_chaos(env: Topology) -> Report:
    wait(
        lambda: httpx.get(env.call_url(), timeout=2.0).text == "hello from east",
        120,
        "web in west to reach backend in east",
        interval=0.25,
    )
    wait(lambda: overviews(env), 60, "both zones online at every global replica")
    setup = time.monotonic() - env.began
    traffic, writer = Traffic(env.call_url()), Writer(env.globals)
    traffic.start()
    writer.start()
    faults: list[Fault] = []
    try:
        _progress(writer, 20, "before the faults")
        for fault in (
            lambda: _kill_leader(env, env.globals, "global"),
            lambda: _kill_leader(env, env.zones["east"], "east zone CP"),
            lambda: _kill_followers(env),
            lambda: _stop_postgres(env),
        ):
            faults.append(fault())
            _progress(writer, 20, f"after: {faults[-1].what}")
            if len(faults) > 1:
                faults[-2].ended = faults[-1].began
    finally:
        writer.done.set()
        writer.join()
    last = time.monotonic()
    faults[-1].ended = last
    faults_s = last - faults[0].began
    expected = writer.expected()
    wait(
        lambda: not holds(env, expected), 60, "every write at every replica and zone", interval=0.2
    )
    converged = time.monotonic() - last
    seen = wait(lambda: overviews(env), 30, "the same zone overviews at every replica")
    traffic.done.set()
    traffic.join()
    return Report(faults, writer, traffic, converged, seen, setup, faults_s)
