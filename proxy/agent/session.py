"""The agent's Session with the zone CP: register, then follow updates, forever.

Each connection sends the Dataplane document first and expects ``Registered`` back; after
that the CP streams ``TrustBundle``, ``DnsTable`` and ``Renew`` messages and both ends send
a ``Heartbeat`` every ``interval``. Nothing received for ``timeout`` means a dead path: the
stream is torn down and dialled again, so a half-open connection never looks registered.

The agent's status (``report``: the certificate chain and the digest of the trust bundle
it serves) goes up the stream whenever it changes and again after every registration, so
a control plane that restarted, or a new session after a reconnect, learns it at once.
Only the latest status is kept: several changes while the stream is busy send one.

When the stream breaks the agent reconnects with exponential backoff and jitter (reset
after a connection that stayed up for a while) and registers again; Envoy keeps serving
its last configuration meanwhile, untouched. The one failure that is final is a refusal
(``ControlPlaneRefused``: a wrong token, a name taken by another identity) before the
first registration: it fails ``registered`` and ``run`` returns, so the agent can exit
with the CP's reason instead of knocking forever. A refusal later (a revoked token) is
logged and retried like any other failure.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from proxy.agent.cp_client import (
    AgentClient,
    DnsTable,
    Registration,
    StatusReport,
    dns_table_from_proto,
    registration_from_proto,
    status_to_proto,
    translate,
)
from proxy.agent.errors import (
    AgentError,
    ControlPlaneProtocolError,
    ControlPlaneRefused,
    ControlPlaneUnavailable,
)
from sync.v1 import agent_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionPolicy:
    """Heartbeats (``interval``, ``timeout``) and reconnect backoff, in seconds."""

    interval: float = 5.0
    timeout: float = 15.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    healthy_after: float = 10.0


class _Stalled(Exception):
    pass


class Session:
    """Keeps one Session stream registered; calls back on every update."""

    def __init__(self, client: AgentClient, registration_json: str, *,
                 on_trust_bundle: Callable[[bytes], None],
                 on_dns_table: Callable[[DnsTable], None] = lambda _: None,
                 on_renew: Callable[[], None] = lambda: None,
                 policy: SessionPolicy = SessionPolicy(),
                 rng: random.Random | None = None) -> None:
        self._client = client
        self._json = registration_json
        self._on_trust_bundle = on_trust_bundle
        self._on_dns_table = on_dns_table
        self._on_renew = on_renew
        self._status: StatusReport | None = None
        self._status_changed = asyncio.Event()
        self._policy = policy
        self._rng = rng or random.Random()
        self.registered: asyncio.Future[Registration] = (
            asyncio.get_running_loop().create_future())
        self.connected = asyncio.Event()
        self.connects = 0
        self.last_error = ""
        self.reports_sent = 0

    def report(self, status: StatusReport) -> None:
        """Tell the control plane this status: now if a stream is up, else after the next
        registration. An unchanged status is not sent again."""
        if status != self._status:
            self._status = status
            self._status_changed.set()

    async def run(self) -> None:
        """Until cancelled, or until a refusal before the first registration."""
        loop = asyncio.get_running_loop()
        delay = self._policy.backoff_initial
        while True:
            started = loop.time()
            try:
                await self._once()
            except ControlPlaneRefused as exc:
                self.last_error = exc.detail
                if not self.registered.done():
                    self.registered.set_exception(exc)
                    return
                log.error("%s; retrying", exc.detail)
            except (AgentError, _Stalled) as exc:
                self.last_error = str(exc)
                log.warning("session with the control plane %s: %s", self._client.cp, exc)
            finally:
                self.connected.clear()
            if loop.time() - started > self._policy.healthy_after:
                delay = self._policy.backoff_initial
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, self._policy.backoff_max)

    async def _once(self) -> None:
        call = self._client.session()
        connects = self.connects
        try:
            await self._converse(call)
        except grpc.aio.AioRpcError as exc:
            what = "the session" if self.connects > connects else "the dataplane's registration"
            raise translate(exc, what) from None
        finally:
            call.cancel()

    async def _converse(self, call: Any) -> None:
        p = self._policy
        await call.write(agent_pb2.AgentMessage(register_dataplane_json=self._json))
        first = await self._read(call, p.timeout)
        if first.WhichOneof("message") != "registered":
            raise ControlPlaneProtocolError("the control plane did not answer the "
                                            "registration with Registered")
        self._registered(registration_from_proto(first.registered))
        await self._send_status(call)
        loop = asyncio.get_running_loop()
        reader = asyncio.ensure_future(self._read(call, p.timeout))
        changed = asyncio.ensure_future(self._status_changed.wait())
        next_beat = loop.time() + p.interval
        try:
            while True:
                done, _ = await asyncio.wait({reader, changed},
                                             timeout=max(next_beat - loop.time(), 0),
                                             return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    self._handle(reader.result())
                    reader = asyncio.ensure_future(self._read(call, p.timeout))
                if changed in done:
                    await self._send_status(call)
                    changed = asyncio.ensure_future(self._status_changed.wait())
                if loop.time() >= next_beat:
                    await call.write(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat()))
                    next_beat = loop.time() + p.interval
        finally:
            reader.cancel()
            changed.cancel()

    async def _send_status(self, call: Any) -> None:
        """The latest status, if there is one yet (before the first certificate there is
        none: the first ``report`` sends it)."""
        self._status_changed.clear()
        if self._status is not None:
            await call.write(status_to_proto(self._status))
            self.reports_sent += 1

    async def _read(self, call: Any, timeout: float) -> agent_pb2.ControlPlaneMessage:
        try:
            message = await asyncio.wait_for(call.read(), timeout)
        except TimeoutError:
            raise _Stalled(f"nothing received for {timeout:g}s") from None
        if message is grpc.aio.EOF:
            raise ControlPlaneUnavailable("the control plane closed the session")
        assert isinstance(message, agent_pb2.ControlPlaneMessage)
        return message

    def _registered(self, registration: Registration) -> None:
        self.connects += 1
        self.connected.set()
        self.last_error = ""
        if not self.registered.done():
            self.registered.set_result(registration)
            log.info("registered %s.%s in zone %s as node %s", registration.mesh,
                     registration.name, registration.zone, registration.node_id)
        elif self.registered.result() != registration:
            log.warning("the control plane now registers this dataplane as %s (was %s); "
                        "Envoy keeps its node id until it restarts",
                        registration, self.registered.result())
        else:
            log.info("registered again with the control plane %s", self._client.cp)

    def _handle(self, message: agent_pb2.ControlPlaneMessage) -> None:
        kind = message.WhichOneof("message")
        if kind == "trust_bundle":
            self._on_trust_bundle(message.trust_bundle.pem)
        elif kind == "dns_table":
            self._on_dns_table(dns_table_from_proto(message.dns_table))
        elif kind == "renew":
            self._on_renew()
        elif kind == "registered":
            self._registered(registration_from_proto(message.registered))
