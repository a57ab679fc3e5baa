"""The load of the chaos test: calls on the data path and policy writes at the global.

``Traffic`` calls backend through web's outbound every 20 ms, each call on a new
connection, and keeps every failure. ``Writer`` updates one of ``POLICIES`` MeshTimeouts
every 50 ms through the global replicas in turn, at the version it last stored, moving
to the next replica on a connection error or a 5xx; a write whose answer was lost (or
was a 5xx: a commit the database did not confirm may still have landed) is sent again
at the same version, and a 409 then means it had landed (its sequence number is what is
stored) or that something else wrote (a failure of the test); a create is read back
before it is sent again. So the writes
that landed are known exactly: each name's version is one plus their number, and its
stored sequence number is the last one's.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.integration.chaos_env import ControlPlane

POLICIES = 8
SEQ_LABEL = "chaos.gossamer.io/seq"
WRITE_EVERY = 0.05
CALL_EVERY = 0.02


def policy(name: str, seq: int, version: int | None) -> dict[str, Any]:
    """MeshTimeout ``name`` carrying write number ``seq`` (a label, and in its timeout so
    that every write changes the Envoy config of web's outbound)."""
    doc: dict[str, Any] = {
        "type": "MeshTimeout",
        "name": name,
        "mesh": "default",
        "labels": {SEQ_LABEL: str(seq)},
        "spec": {
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": "backend"},
                    "default": {"http": {"requestTimeout": f"{30 + seq % 30}s"}},
                }
            ]
        },
    }
    if version is not None:
        doc["version"] = version
    return doc


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
                ok, detail = (
                    r.status_code == 200 and r.text == "hello from east",
                    (f"{r.status_code} {r.text[:80]!r}"),
                )
            except httpx.HTTPError as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            self.calls.append(Call(at, ok, detail))

    def failures(self) -> list[Call]:
        return [c for c in self.calls if not c.ok]


@dataclass
class Write:
    seq: int
    name: str
    version: int  # the version it was sent at (0: a create)
    at: float = 0.0
    acked: bool = False  # answered 2xx
    landed: bool = False  # acked, or found stored after a lost answer
    refusals: list[tuple[float, str, str]] = field(default_factory=list)  # at, kind, detail

    def refuse(self, kind: str, detail: str) -> None:
        """A failed attempt: ``unreachable`` (nothing sent), ``no answer``, or the 5xx."""
        self.refusals.append((time.monotonic(), kind, detail))
        time.sleep(WRITE_EVERY)  # the writer's pace, also between attempts


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
        lost = False  # an answer lost (or a 5xx): the write may have landed
        while not write.landed:
            replica = self._replica()
            if lost and write.version == 0 and self._stored_is(write, replica, path):
                break  # a create sent again would replace itself: read it back first
            try:
                r = httpx.put(
                    f"{replica.api}{path}",
                    json=doc,
                    timeout=5.0,
                    headers={"Authorization": f"Bearer {replica.token()}"},
                )
            except httpx.ConnectError as exc:  # nothing was sent
                write.refuse("unreachable", f"{replica.name}: {exc!r}")
                continue
            except (httpx.HTTPError, OSError) as exc:
                lost = True
                write.refuse("no answer", f"{replica.name}: {exc!r}")
                continue
            if r.is_success:
                stored = int(r.json()["version"])
                if stored != write.version + 1:
                    self.errors.append(
                        f"write {write.seq} stored at version {stored}, sent at {write.version}"
                    )
                write.acked = write.landed = True
            elif r.status_code == 409 and lost:
                if not self._stored_is(write, replica, path):
                    self.errors.append(f"write {write.seq}: 409 {r.text[:120]} and not stored")
                    write.landed = True  # given up; the test fails on errors
            elif r.status_code >= 500:
                # A commit whose acknowledgement the database lost is answered 503 too.
                lost = True
                write.refuse(str(r.status_code), f"{replica.name}: {r.text[:120]}")
            else:
                self.errors.append(f"write {write.seq}: {r.status_code} {r.text[:200]}")
                write.landed = True  # given up; the test fails on errors
        self.versions[write.name] = write.version + 1

    def _stored_is(self, write: Write, replica: ControlPlane, path: str) -> bool:
        """Whether ``write`` is what ``path`` holds (then it landed), read at ``replica``."""
        try:
            r = replica.get(path)
        except (httpx.HTTPError, OSError) as exc:
            write.refuse("unreachable", f"{replica.name}: reading back {exc!r}")
            return False
        if r.status_code != 200:
            return False
        stored = r.json()
        write.landed = stored.get("labels", {}).get(SEQ_LABEL) == str(write.seq) and (
            stored.get("version") == write.version + 1
        )
        return write.landed

    def expected(self) -> dict[str, tuple[int, int]]:
        """Name -> (version, seq) the store must hold: one version per landed write."""
        out: dict[str, tuple[int, int]] = {}
        for w in self.writes:
            if w.landed:
                version, _ = out.get(w.name, (0, 0))
                out[w.name] = (version + 1, w.seq)
        return out
