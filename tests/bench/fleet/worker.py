"""The simulated sidecars of one zone, in a process of their own, driven over stdin/stdout.

``python -m tests.bench.fleet.worker CONFIG.json`` connects every sidecar the config lists
(``sidecar.Sidecar``: agent Session, CSR, ADS) to the zone CP's xDS port, prints
``{"event": "ready", ...}`` once each has ACKed its clusters, listeners and endpoints,
then answers JSON commands, one a line (answers and events are JSON lines on stdout):

- ``{"cmd": "watch", "id", "kind": "timeout"|"endpoint", ...}`` arms a watch
  (``watches.arm``) and answers ``armed`` with the number of affected proxies; ``done``
  follows, with the monotonic time the last of them ACKed the change (``time.monotonic``
  is the system-wide CLOCK_MONOTONIC, so the driver compares it with its own);
- ``{"cmd": "add", "name", "service", "address"}`` registers one more sidecar (its
  Session only: an endpoint appears) and answers ``added`` with the time it was sent;
  ``{"cmd": "remove", "name"}`` ends its Session (the endpoint goes), ``removed``;
- ``{"cmd": "counts"}`` answers each proxy's count of ADS responses; ``stop`` ends.

Each sidecar opens two TLS connections of its own, as a real one does (its agent's
Session and SignCertificate over one, its Envoy's ADS over the other: ``Dialer``), so
the zone CP holds what a real fleet makes it hold. With ``"per_channel": N`` in the
config (``bench_fleet --per-channel N``) N sidecars share one connection for all their
calls instead, as the simulator did before: cheaper for the worker, but the zone CP's
memory per sidecar then leaves out most of the connections' cost. All sidecars run on
one event loop, so a thousand of them cost one core a fraction of its time while idle.
The process raises its open-file limit to what its connections need
(``processes.raise_nofile``) and exits when its stdin closes, so it never outlives the
driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from tests.bench.fleet.processes import fds_needed, raise_nofile
from tests.bench.fleet.sidecar import Channels, Seen, Sidecar, Spec
from tests.bench.fleet.watches import Watch, arm

CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1),  # a connection per channel
                   ("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.keepalive_time_ms", 60_000)]
CONCURRENCY = 16
CONNECT_DEADLINE = 1800.0  # the zone CP may regenerate every proxy per registration
RETRYABLE = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE,
             grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
             grpc.StatusCode.DEADLINE_EXCEEDED}

log = logging.getLogger("fleet.worker")


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Dialer:
    """The sidecars' channels to the zone CP's xDS port (TLS, verified with the zone's
    CA). ``per_channel`` None: two new channels per sidecar, each its own connection
    (``grpc.use_local_subchannel_pool``: channels do not share subchannels); N: sidecar i
    uses channel i // N for both its agent and its ADS calls."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials,
                 per_channel: int | None) -> None:
        self._target = target
        self._credentials = credentials
        self.per_channel = per_channel
        self._shared: dict[int, grpc.aio.Channel] = {}

    def _channel(self) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(self._target, self._credentials,
                                       options=CHANNEL_OPTIONS)

    def channels(self, index: int) -> Channels:
        """The channels of sidecar ``index``."""
        if self.per_channel is None:
            return Channels(self._channel(), self._channel(), owned=True)
        key = index // self.per_channel
        if key not in self._shared:
            self._shared[key] = self._channel()
        return Channels(self._shared[key], self._shared[key])

    async def close(self) -> None:
        for channel in self._shared.values():
            await channel.close()


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.mesh = config["mesh"]
        self.tokens: dict[str, str] = config["tokens"]
        self.specs = [Spec(s["name"], s["service"], s["address"], tuple(s["outbounds"]),
                           s.get("protocol", "http")) for s in config["specs"]]
        ca = Path(config["ca_file"]).read_bytes()
        per_channel = config.get("per_channel")
        raise_nofile(fds_needed(len(self.specs), per_channel))
        self.dialer = Dialer(config["xds"], grpc.ssl_channel_credentials(root_certificates=ca),
                             per_channel)
        self.sidecars: dict[str, Sidecar] = {}
        self.extra: dict[str, Sidecar] = {}
        self.watches: dict[str, Watch] = {}

    def on_ack(self, sidecar: Sidecar) -> None:
        if self.watches:
            self.check(sidecar.spec.name, sidecar.seen, time.monotonic())

    def check(self, name: str, seen: Seen, now: float) -> None:
        """``name`` holds ``seen`` as of ``now``: complete the watches it satisfies."""
        for watch in list(self.watches.values()):
            if watch.saw(name, seen, now):
                del self.watches[watch.id]
                emit({"event": "done", "id": watch.id, "last": watch.last,
                      "affected": watch.affected})

    async def _connect(self, index: int, spec: Spec, gate: asyncio.Semaphore) -> None:
        deadline = time.monotonic() + CONNECT_DEADLINE
        async with gate:
            while True:
                sidecar = Sidecar(spec, self.mesh, self.tokens[spec.service],
                                  self.dialer.channels(index), self.on_ack)
                try:
                    await sidecar.register()
                    await sidecar.sign()
                    await sidecar.connect_ads()
                    break
                except (grpc.aio.AioRpcError, TimeoutError) as exc:
                    await sidecar.close()
                    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
                    if (code is not None and code not in RETRYABLE) or (
                            time.monotonic() > deadline):
                        why = f"{code.name}: {exc.details()}" if code else "no answer"
                        raise RuntimeError(f"{spec.name}: {why}") from None
                    await asyncio.sleep(0.2)
        self.sidecars[spec.name] = sidecar
        await asyncio.wait_for(sidecar.synced.wait(), CONNECT_DEADLINE)
        if len(self.sidecars) % 100 == 0:
            log.warning("%d sidecars connected and synced", len(self.sidecars))

    async def connect_all(self) -> None:
        started = time.monotonic()
        gate = asyncio.Semaphore(CONCURRENCY)
        await asyncio.gather(*(self._connect(i, s, gate) for i, s in enumerate(self.specs)))
        emit({"event": "ready", "connected": len(self.sidecars),
              "seconds": time.monotonic() - started})

    async def holdings(self, _cmd: dict[str, Any]) -> dict[str, Seen]:
        """What each proxy holds now, to arm a watch with."""
        return {n: s.seen for n, s in self.sidecars.items()}

    async def command(self, cmd: dict[str, Any]) -> None:
        what = cmd["cmd"]
        if what == "watch":
            seen = await self.holdings(cmd)
            now = time.monotonic()
            watch = arm(cmd["id"], cmd, self.specs, seen.get, now)
            emit({"event": "armed", "id": watch.id, "affected": watch.affected})
            if not watch.waiting:
                emit({"event": "done", "id": watch.id, "last": watch.last or now,
                      "affected": watch.affected})
            else:
                self.watches[watch.id] = watch
        elif what == "add":
            spec = Spec(cmd["name"], cmd["service"], cmd["address"], ())
            index = len(self.specs) + len(self.extra)
            sidecar = Sidecar(spec, self.mesh, self.tokens[spec.service],
                              self.dialer.channels(index), lambda _: None)
            await sidecar.register()
            self.extra[spec.name] = sidecar
            emit({"event": "added", "name": spec.name, "t0": sidecar.registered_at})
        elif what == "remove":
            t0 = time.monotonic()
            await self.extra.pop(cmd["name"]).close()
            emit({"event": "removed", "name": cmd["name"], "t0": t0})
        elif what == "counts":
            emit({"event": "counts", "responses": {n: s.responses for n, s in (
                await self.holdings(cmd)).items()}})
        elif what == "cancel":
            self.watches.pop(cmd["id"], None)
        else:
            raise ValueError(f"unknown command {what!r}")

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            cmd = json.loads(line)
            if cmd["cmd"] == "stop":
                break
            try:
                await self.command(cmd)
            except Exception as exc:  # the driver reports it and stops the run
                emit({"event": "error", "id": cmd.get("id"), "detail": str(exc)})

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in [*self.sidecars.values(),
                                                    *self.extra.values()]),
                             return_exceptions=True)
        await self.dialer.close()


async def main(config_path: str, kind: type[Worker] = Worker) -> None:
    worker = kind(json.loads(Path(config_path).read_text()))
    try:
        await worker.connect_all()
        await worker.serve()
    except Exception as exc:
        emit({"event": "error", "detail": f"{type(exc).__name__}: {exc}"})
    finally:
        await worker.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(sys.argv[1]))
