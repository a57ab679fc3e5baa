"""The chaos harness of issue 15: every part of a production topology as a real process on
one host, faults injected while traffic and writes flow, and what each fault cost.

``Topology.up()`` starts a throwaway PostgreSQL (``tests/pg.py``) with one database for
the global and one per zone; three ``gossamer global run`` replicas on the first; per
zone (``east``, ``west``) two ``gossamer zone run`` replicas on the zone's database,
each given every global replica's sync address; in east ``backend-1`` (a real
``gossamer proxy run`` with Envoy in front of a small HTTP app) and east's ingress
(``gossamer ingress run``); in west ``web-1``, whose explicit outbound reaches backend
in east through that ingress. Every agent is given both of its zone's replicas
(``--cp a,b``) and a CA file holding both replicas' CAs.

``Traffic`` calls backend through web's outbound every 20 ms, each call on a new
connection, and keeps every failure. ``Writer`` updates one of ``POLICIES`` MeshTimeouts
every 50 ms through the global replicas in turn, at the version it last stored, moving
to the next replica on a connection error or a 5xx; a write whose answer was lost is
sent again at the same version, and a 409 then means it had landed (its sequence number
is what is stored) or that something else wrote (a failure of the test). So the writes
that landed are known exactly: each name's version is one plus their number, and its
stored sequence number is the last one's.

``run_chaos`` is the scenario the test and ``tests/bench/bench_chaos.py`` share: kill -9
the global leader, then east's zone CP leader, then a global replica and a west zone CP
replica that do not lead, then stop PostgreSQL for ``PG_DOWN`` seconds; each killed
process is started again on its data and ports before the next fault. It returns a
``Report``: the time to a new leader per fault, the writes refused during each, the
failed calls, and how long everything took to converge at the end.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.integration.agent_env import envoy_pids
from tests.integration.cli_env import Proc, _clean_env
from tests.integration.ingress_env import free_port
from tests.integration.test_agent_zone import DATAPLANE_YAML, OUTBOUND
from tests.pg import PostgresCluster

GOSSAMER = Path(sys.executable).parent / "gossamer"
ZONES = ("east", "west")
LEASE = 4.0  # --leader-lease of every control plane (seconds)
NEW_LEADER_WITHIN = 15.0  # issue 15's bound
PG_DOWN = 10.0
POLICIES = 8
SEQ_LABEL = "chaos.gossamer.io/seq"
WRITE_EVERY = 0.05
CALL_EVERY = 0.02
BEAT = ("--heartbeat-interval", "1s", "--heartbeat-timeout", "3s")
_LEADER = re.compile(r'^gossamer_leader\{lease="(\w+)"\} (\S+)$', re.M)


def policy(name: str, seq: int, version: int | None) -> dict[str, Any]:
    """MeshTimeout ``name`` carrying write number ``seq`` (a label, and in its timeout so
    that every write changes the Envoy config of web's outbound)."""
    doc: dict[str, Any] = {
        "type": "MeshTimeout", "name": name, "mesh": "default",
        "labels": {SEQ_LABEL: str(seq)},
        "spec": {"to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                         "default": {"http": {"requestTimeout": f"{30 + seq % 30}s"}}}]}}
    if version is not None:
        doc["version"] = version
    return doc


# -- processes ---------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """A global or zone CP replica; ``proc`` is started again on the same data and ports."""

    name: str
    lease: str  # its lease's name: "global" or "zone"
    proc: Proc
    data_dir: Path

    def kill(self) -> None:
        assert self.proc.popen is not None
        self.proc.popen.send_signal(signal.SIGKILL)
        self.proc.popen.wait()

    def start(self) -> None:
        self.proc.start()

    def alive(self) -> bool:
        return self.proc.popen is not None and self.proc.popen.poll() is None

    @property
    def api(self) -> str:
        return self.proc.api

    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def leading(self) -> bool:
        """``gossamer_leader`` of its lease on ``/metrics`` (False when it does not answer)."""
        if not self.alive():
            return False
        try:
            text = httpx.get(f"{self.api}/metrics", timeout=1.0).text
        except httpx.HTTPError:
            return False
        return any(m.group(1) == self.lease and float(m.group(2)) == 1.0
                   for m in _LEADER.finditer(text))

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.api}{path}", timeout=5.0,
                         headers={"Authorization": f"Bearer {self.token()}"})


def control_plane(tmp: Path, name: str, lease: str, args: list[str]) -> ControlPlane:
    data, api = tmp / name, f"127.0.0.1:{free_port()}"
    full = [*args, "--data-dir", str(data), "--api-addr", api, *BEAT,
            "--leader-lease", f"{LEASE:g}s"]
    proc = Proc(full, tmp / f"{name}.log", f"http://{api}", _clean_env(tmp / f"{name}.yaml"))
    return ControlPlane(name, lease, proc, data)


@dataclass
class Agent:
    """A ``gossamer proxy run`` or ``gossamer ingress run`` process and its Envoy."""

    name: str
    args: list[str]
    directory: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**_clean_env(self.directory / "config.yaml"), "GOSSAMER_DNS_ADDR": "127.0.0.1:0"}
        with open(self.directory / "agent.log", "ab") as log:
            self.popen = subprocess.Popen(
                [str(GOSSAMER), *self.args, "--work-dir", str(self.directory / "work")],
                stdout=log, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        for pid in envoy_pids(self.directory / "work"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log(self) -> str:
        path = self.directory / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"hello from east"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - its signature
        pass


class _App(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


# -- load --------------------------------------------------------------------------------


@dataclass
class Call:
    at: float  # monotonic
    ok: bool
    detail: str


class Traffic(threading.Thread):
    """Calls ``url`` every ``CALL_EVERY`` seconds, a new connection per call."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="traffic")
        self.url = url
        self.calls: list[Call] = []
        self.done = threading.Event()

    def run(self) -> None:
        headers = {"connection": "close"}
        while not self.done.wait(CALL_EVERY):
            at = time.monotonic()
            try:
                r = httpx.get(self.url, headers=headers, timeout=5.0)
                ok, detail = r.status_code == 200 and r.text == "hello from east", (
                    f"{r.status_code} {r.text[:80]!r}")
            except httpx.HTTPError as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            self.calls.append(Call(at, ok, detail))

    def failures(self) -> list[Call]:
        return [c for c in self.calls if not c.ok]


@dataclass
class Write:
    seq: int
    name: str
    version: int  # the version it was sent at (None: a create) -> 0
    at: float = 0.0
    acked: bool = False  # answered 2xx
    landed: bool = False  # acked, or found stored after a lost answer
    refusals: list[tuple[float, str]] = field(default_factory=list)


class Writer(threading.Thread):
    """One policy write every ``WRITE_EVERY`` seconds through the global replicas in turn."""

    def __init__(self, globals_: list[ControlPlane]) -> None:
        super().__init__(daemon=True, name="writer")
        self.globals = globals_
        self.versions: dict[str, int] = {}
        self.writes: list[Write] = []
        self.errors: list[str] = []  # what must never happen: a foreign write, a 4xx
        self.done = threading.Event()
        self._next = 0

    def _replica(self) -> ControlPlane:
        self._next = (self._next + 1) % len(self.globals)
        return self.globals[self._next]

    def run(self) -> None:
        seq = 0
        while not self.done.wait(WRITE_EVERY):
            seq += 1
            name = f"chaos-{seq % POLICIES}"
            write = Write(seq, name, self.versions.get(name, 0), time.monotonic())
            self.writes.append(write)
            self._land(write)

    def _land(self, write: Write) -> None:
        """Send ``write`` until it is stored, through the next replica after a failure."""
        doc = policy(write.name, write.seq, write.version or None)
        path = f"/meshes/default/meshtimeouts/{write.name}"
        while not write.landed:
            replica = self._replica()
            try:
                r = httpx.put(f"{replica.api}{path}", json=doc, timeout=5.0,
                              headers={"Authorization": f"Bearer {replica.token()}"})
            except (httpx.HTTPError, OSError) as exc:
                write.refusals.append((time.monotonic(), f"{replica.name}: {exc!r}"))
                time.sleep(WRITE_EVERY)
                continue
            if r.is_success:
                stored = int(r.json()["version"])
                if stored != write.version + 1:
                    self.errors.append(f"write {write.seq} stored at version {stored}, "
                                       f"sent at {write.version}")
                write.acked = write.landed = True
            elif r.status_code == 409 or (r.status_code == 404 and write.version == 0):
                self._landed_before(write, replica, path, r)
            elif r.status_code >= 500:
                write.refusals.append((time.monotonic(), f"{replica.name}: {r.status_code} "
                                       f"{r.text[:120]}"))
                time.sleep(WRITE_EVERY)
                continue
            else:
                self.errors.append(f"write {write.seq}: {r.status_code} {r.text[:200]}")
                write.landed = True  # give up on it; the test fails on errors
            if write.landed:
                self.versions[write.name] = write.version + 1

    def _landed_before(self, write: Write, replica: ControlPlane, path: str,
                       answer: httpx.Response) -> None:
        """A 409 after a lost answer: the write landed if what is stored is ours."""
        try:
            stored = replica.get(path).json()
        except (httpx.HTTPError, ValueError) as exc:
            write.refusals.append((time.monotonic(), f"{replica.name}: reading back {exc!r}"))
            time.sleep(WRITE_EVERY)
            return
        if stored.get("labels", {}).get(SEQ_LABEL) == str(write.seq) and (
                stored.get("version") == write.version + 1):
            write.landed = True
        else:
            self.errors.append(f"write {write.seq} refused ({answer.status_code} "
                               f"{answer.text[:120]}) and not stored: {stored}")
            write.landed = True

    def expected(self) -> dict[str, tuple[int, int]]:
        """Name -> (version, seq) the store must hold: one version per landed write."""
        out: dict[str, tuple[int, int]] = {}
        for w in self.writes:
            if w.landed:
                version, _ = out.get(w.name, (0, 0))
                out[w.name] = (version + 1, w.seq)
        return out


# -- the topology ------------------------------------------------------------------------


@dataclass
class Topology:
    tmp: Path
    pg: PostgresCluster | None = None
    globals: list[ControlPlane] = field(default_factory=list)
    zones: dict[str, list[ControlPlane]] = field(default_factory=dict)
    agents: list[Agent] = field(default_factory=list)
    outbound: int = 0
    app: _App | None = None

    def everything(self) -> list[ControlPlane]:
        return [*self.globals, *(cp for cps in self.zones.values() for cp in cps)]

    def up(self) -> None:
        self.pg = PostgresCluster.create()
        store = self.pg.create_database("chaos_global")
        for i in range(3):
            cp = control_plane(self.tmp, f"global-{i}", "global", [
                "global", "run", "--store", store, "--sync-addr", f"127.0.0.1:{free_port()}"])
            self.globals.append(cp)
            cp.start()
            if i == 0:  # the first stores the admin token and CA the others adopt
                wait(cp.leading, 30, "the first global replica to lead")
        syncs = ",".join(f"grpcs://{c.proc.args[c.proc.args.index('--sync-addr') + 1]}"
                         for c in self.globals)
        ca = self.globals[0].data_dir / "tls" / "ca.pem"
        for zone in ZONES:
            token = self.token("/tokens/zone", {"zone": zone, "scopes": ["cp"]}, f"{zone}-cp")
            zstore = self.pg.create_database(f"chaos_{zone}")
            self.zones[zone] = []
            for i in (1, 2):
                cp = control_plane(self.tmp, f"{zone}-{i}", "zone", [
                    "zone", "run", "--zone", zone, "--store", zstore,
                    "--xds-addr", f"127.0.0.1:{free_port()}", "--global", syncs,
                    "--token-file", str(token), "--global-ca", str(ca)])
                self.zones[zone].append(cp)
                cp.start()
        self._agents()

    def token(self, route: str, body: dict[str, Any], name: str) -> Path:
        leader = self.globals[0]
        r = httpx.post(f"{leader.api}{route}", json=body, timeout=30.0,
                       headers={"Authorization": f"Bearer {leader.token()}"})
        r.raise_for_status()
        path = self.tmp / f"{name}.token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(r.json()["token"])
        return path

    def cp_args(self, zone: str, order: tuple[int, int] = (0, 1)) -> list[str]:
        """``--cp`` with both of the zone's replicas and a CA file with both CAs."""
        replicas = [self.zones[zone][i] for i in order]
        bundle = self.tmp / f"{zone}-cp-ca.pem"
        bundle.write_text("".join((cp.data_dir / "tls" / "ca.pem").read_text()
                                  for cp in replicas))
        urls = ",".join(f"https://{cp.proc.args[cp.proc.args.index('--xds-addr') + 1]}"
                        for cp in replicas)
        return ["--cp", urls, "--cp-ca", str(bundle)]

    def _agents(self) -> None:
        self.app = _App(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.app.serve_forever, daemon=True, name="app").start()
        app_port = self.app.server_address[1]
        self.outbound = free_port()
        ingress_token = self.token("/tokens/zone", {"zone": "east", "scopes": ["ingress"]},
                                   "east-ingress")
        ingress = self.tmp / "east-ingress"
        ingress.mkdir()
        self.agents.append(Agent("east-ingress", [
            "ingress", "run", *self.cp_args("east"), "--token-file", str(ingress_token),
            "--listen", f"127.0.0.1:{free_port()}", "--admin-port", str(free_port()),
            "--drain-time", "1s"], ingress))
        for name, service, zone, outbound in (("backend-1", "backend", "east", None),
                                              ("web-1", "web", "west", self.outbound)):
            directory = self.tmp / name
            directory.mkdir()
            dp = directory / "dataplane.yaml"
            dp.write_text(DATAPLANE_YAML + (OUTBOUND if outbound else ""))
            token = self.token("/tokens/dataplane", {"mesh": "default", "service": service},
                               name)
            args = ["proxy", "run", "--dataplane", str(dp), "--dataplane-var", f"name={name}",
                    "--dataplane-var", f"service={service}",
                    "--dataplane-var", f"inbound={free_port()}",
                    "--dataplane-var", f"app={app_port}",
                    *self.cp_args(zone), "--token-file", str(token),
                    "--admin-port", str(free_port()), "--drain-time", "1s"]
            if outbound:
                args += ["--dataplane-var", f"outbound={outbound}"]
            self.agents.append(Agent(name, args, directory))
        for agent in self.agents:
            agent.start()

    def call_url(self) -> str:
        return f"http://127.0.0.1:{self.outbound}/"

    def down(self) -> None:
        for agent in self.agents:
            agent.stop()
        for cp in reversed(self.everything()):
            if cp.alive():
                cp.kill()
        if self.app is not None:
            self.app.shutdown()
        if self.pg is not None:
            self.pg.destroy()

    def logs(self, lines: int = 40) -> str:
        parts = []
        for cp in self.everything():
            tail = "\n".join(cp.proc.log().splitlines()[-lines:])
            parts.append(f"===== {cp.name} =====\n{tail}")
        for agent in self.agents:
            tail = "\n".join(agent.log().splitlines()[-lines:])
            parts.append(f"===== {agent.name} =====\n{tail}")
        return "\n".join(parts)

    def leader(self, cps: list[ControlPlane]) -> ControlPlane | None:
        leading = [cp for cp in cps if cp.leading()]
        return leading[0] if len(leading) == 1 else None


@contextlib.contextmanager
def topology(tmp: Path) -> Iterator[Topology]:
    env = Topology(tmp)
    try:
        env.up()
        yield env
    finally:
        env.down()


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """``check()``'s first truthy result, polled; ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as exc:  # "not yet"; reported at the deadline
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


# -- the scenario ------------------------------------------------------------------------


@dataclass
class Fault:
    what: str
    began: float  # monotonic
    new_leader_s: float  # from the fault (for PostgreSQL: from its return) to a leader
    leaders_after: dict[str, str]  # lease scope -> who leads once it is over
    ended: float = 0.0  # when the next fault began (or the writer stopped)

    def refused(self, writer: Writer) -> int:
        return sum(self.began <= at < self.ended for w in writer.writes
                   for at, _ in w.refusals)

    def failed_calls(self, traffic: Traffic) -> int:
        return sum(self.began <= c.at < self.ended for c in traffic.failures())


@dataclass
class Report:
    faults: list[Fault]
    writer: Writer
    traffic: Traffic
    convergence_s: float  # from the last write to every replica and zone holding it
    overviews: list[Any]  # /zones/_overviews of each global replica at the end

    def summary(self) -> str:
        lines = ["| fault | new leader after s | writes refused | failed calls |",
                 "|---|---:|---:|---:|"]
        for f in self.faults:
            lines.append(f"| {f.what} | {f.new_leader_s:.2f} | {f.refused(self.writer)} | "
                         f"{f.failed_calls(self.traffic)} |")
        landed = sum(w.landed for w in self.writer.writes)
        acked = sum(w.acked for w in self.writer.writes)
        lines.append(f"\nwrites: {len(self.writer.writes)} sent, {acked} answered 2xx, "
                     f"{landed} stored; calls: {len(self.traffic.calls)}, "
                     f"{len(self.traffic.failures())} failed; converged "
                     f"{self.convergence_s:.2f} s after the last write")
        return "\n".join(lines)


def _progress(writer: Writer, more: int, what: str) -> None:
    """Wait until ``more`` further writes have been answered 2xx."""
    target = sum(w.acked for w in writer.writes) + more
    wait(lambda: sum(w.acked for w in writer.writes) >= target, 60,
         f"{more} more acknowledged writes {what}")


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
    victims = [next(cp for cp in env.globals if cp.name != before["global"]),
               next(cp for cp in env.zones["west"] if cp.name != before["west"])]
    began = time.monotonic()
    for cp in victims:
        cp.kill()
    # The leaders must stay the leaders: "a new leader" is the one there was.
    wait(lambda: _who(env) == before, NEW_LEADER_WITHIN, f"the leaders {before} to stay")
    fault = Fault("kill -9 a global and a west zone CP replica that do not lead", began,
                  time.monotonic() - began, {})
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
    wait(lambda: "none" not in _who(env).values(), NEW_LEADER_WITHIN,
         "a leader of the global and of each zone")
    return Fault(f"stop PostgreSQL for {PG_DOWN:g} s", began, time.monotonic() - back,
                 _who(env))


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
                wrong.append(f"{cp.name}: {name} holds write {doc['labels'].get(SEQ_LABEL)}, "
                             f"not {seq}")
            if cp.lease == "global" and doc["version"] != version:
                wrong.append(f"{cp.name}: {name} at version {doc['version']}, "
                             f"{version - 1} writes landed")
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
    wait(lambda: httpx.get(env.call_url(), timeout=2.0).text == "hello from east", 120,
         "web in west to reach backend in east", interval=0.25)
    wait(lambda: overviews(env), 60, "both zones online at every global replica")
    traffic, writer = Traffic(env.call_url()), Writer(env.globals)
    traffic.start()
    writer.start()
    faults: list[Fault] = []
    try:
        _progress(writer, 20, "before the faults")
        for fault in (lambda: _kill_leader(env, env.globals, "global"),
                      lambda: _kill_leader(env, env.zones["east"], "east zone CP"),
                      lambda: _kill_followers(env),
                      lambda: _stop_postgres(env)):
            faults.append(fault())
            _progress(writer, 20, f"after: {faults[-1].what}")
            if len(faults) > 1:
                faults[-2].ended = faults[-1].began
    finally:
        writer.done.set()
        writer.join()
    last = time.monotonic()
    faults[-1].ended = last
    expected = writer.expected()
    wait(lambda: not holds(env, expected), 60, "every write at every replica and zone",
         interval=0.2)
    converged = time.monotonic() - last
    seen = wait(lambda: overviews(env), 30, "the same zone overviews at every replica")
    traffic.done.set()
    traffic.join()
    return Report(faults, writer, traffic, converged, seen)
