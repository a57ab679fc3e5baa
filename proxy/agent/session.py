"""The agent's Session with the zone CP: register, then follow updates, forever.

Each connection sends the Dataplane document first and expects ``Registered`` back; after
that the CP streams ``TrustBundle``, ``DnsTable`` and ``Renew`` messages and both ends send
a ``Heartbeat`` every ``interval``. Nothing received for ``timeout`` means a dead path: the
stream is torn down and dialled again, so a half-open connection never looks registered.

The agent's status (``report``: the certificate chain and the digest of the trust bundle
it serves) goes up the stream whenever it changes and again after every registration, so
a control plane that restarted, or a new session after a reconnect, learns it at once.
Only the latest status is kept: several changes while the stream is busy send one.

With ``admin_port`` the agent announces ``AgentFeatures.envoy_admin_relay`` after each
registration and answers ``EnvoyAdminRequest`` (``proxy.agent.admin_relay``): the page is
fetched on the side and its pieces written by this loop, the stream's only writer.

When the stream breaks the agent reconnects with exponential backoff and jitter (reset
after a connection that stayed up for a while) and registers again; with several ``--cp``
addresses it tries the next one first, after a short pause, and backs off only once all
have failed in a row (``AgentClient.fail_over``); Envoy keeps serving
its last configuration meanwhile, untouched. The one failure that is final is a refusal
(``ControlPlaneRefused``: a wrong token, a name taken by another identity) before the
first registration: it fails ``registered`` and ``run`` returns, so the agent can exit
with the CP's reason instead of knocking forever. A refusal later (a revoked token) is
logged and retried like any other failure.

The token: every connection presents the client's token of that moment, after
``before_connect`` (the agent re-reads its token file there), and ``token`` is the one
the live registration holds. ``reconnect`` (a new token was read) ends the stream at once
and registers again without backoff: a hand-over. The CP refuses a name held by a live
session with another token (ALREADY_EXISTS), and it ends the old session only once it
sees the old stream cancelled, deleting the Dataplane as it does; the new registration
stores it again. So for ``handover`` seconds after ending its own stream the agent takes
ALREADY_EXISTS as "not yet" and tries again every ``handover_retry`` seconds: the
Dataplane is away for about one round trip to the CP.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from proxy.agent.admin_relay import AdminRelay
from proxy.agent.cp_client import (
    AgentClient,
    DnsTable,
    Registration,
    StatusReport,
    dns_table_from_proto,
    registration_from_proto,
    status_to_proto,
)
from proxy.agent.errors import (
    AgentError,
    ControlPlaneProtocolError,
    ControlPlaneRefused,
    ControlPlaneUnavailable,
)
from proxy.agent.grpc_wire import EOF, RpcError
from proxy.agent.settings import SessionPolicy as SessionPolicy  # re-exported
from sync.v1 import agent_pb2

log = logging.getLogger(__name__)


class _Stalled(Exception):
    pass


class _Reconnect(Exception):
    """``reconnect`` was asked: end this stream and register again at once."""


class Session:
    """Keeps one Session stream registered; calls back on every update."""

    def __init__(self, client: AgentClient, registration_json: str, *,
                 on_trust_bundle: Callable[[bytes], None],
                 on_dns_table: Callable[[DnsTable], None] = lambda _: None,
                 on_renew: Callable[[], None] = lambda: None,
                 before_connect: Callable[[], object] = lambda: None,
                 on_registered: Callable[[Registration, str], None] = lambda _, __: None,
                 policy: SessionPolicy | None = None,
                 rng: random.Random | None = None,
                 admin_port: int | None = None) -> None:
        self._client = client
        self._json = registration_json
        self._on_trust_bundle = on_trust_bundle
        self._on_dns_table = on_dns_table
        self._on_renew = on_renew
        self._before_connect = before_connect
        self._on_registered = on_registered
        self._reconnect = asyncio.Event()
        self._handover_until = 0.0
        self._status: StatusReport | None = None
        self._status_changed = asyncio.Event()
        self._policy = policy or SessionPolicy()
        self._admin = AdminRelay(admin_port) if admin_port else None
        self._rng = rng or random.Random()
        self.registered: asyncio.Future[Registration] = (
            asyncio.get_running_loop().create_future())
        self.connected = asyncio.Event()
        self.token = ""  # the token of the live registration ("" while there is none)
        self.connects = 0
        self.last_error = ""
        self.reports_sent = 0

    def report(self, status: StatusReport) -> None:
        """Tell the control plane this status: now if a stream is up, else after the next
        registration. An unchanged status is not sent again."""
        if status != self._status:
            self._status = status
            self._status_changed.set()

    def reconnect(self) -> None:
        """End the stream now and register again at once (with the client's token)."""
        self._reconnect.set()

    async def run(self) -> None:
        """Until cancelled, or until a refusal before the first registration."""
        loop = asyncio.get_running_loop()
        delay = self._policy.backoff_initial
        while True:
            started = loop.time()
            try:
                self._before_connect()
                await self._once()
            except _Reconnect:
                self._handover_until = loop.time() + self._policy.handover
                continue
            except ControlPlaneRefused as exc:
                self.last_error = exc.detail
                if not self.registered.done():
                    self.registered.set_exception(exc)
                    return
                if self._handing_over(exc, loop.time()):
                    await asyncio.sleep(self._policy.handover_retry)
                    continue
                log.error("%s; retrying", exc.detail)
            except (AgentError, _Stalled) as exc:
                self.last_error = str(exc)
                log.warning("session with the control plane %s: %s", self._client.cp, exc)
            finally:
                self.connected.clear()
                self.token = ""
            if loop.time() - started > self._policy.healthy_after:
                delay = self._policy.backoff_initial
                self._client.connected_for_long()
            # Another zone CP replica next, if any; the backoff once all failed in a row.
            if not await self._client.fail_over():
                await asyncio.sleep(self._policy.backoff_initial * (0.5 + self._rng.random()))
                continue
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, self._policy.backoff_max)

    def _handing_over(self, exc: ControlPlaneRefused, now: float) -> bool:
        """Whether ``exc`` is the CP still holding the session this agent just ended."""
        return exc.code == "ALREADY_EXISTS" and now < self._handover_until

    async def _once(self) -> None:
        self._reconnect.clear()  # the token read just before is the one this call sends
        token = self._client.token
        call = self._client.session()
        connects = self.connects
        try:
            await self._converse(call, token)
        except RpcError as exc:
            what = "the session" if self.connects > connects else "the dataplane's registration"
            raise self._client.translate(exc, what) from None
        finally:
            call.cancel()

    async def _converse(self, call: Any, token: str) -> None:
        p = self._policy
        await call.write(agent_pb2.AgentMessage(register_dataplane_json=self._json))
        first = await self._read(call, p.timeout)
        if first.WhichOneof("message") != "registered":
            raise ControlPlaneProtocolError("the control plane did not answer the "
                                            "registration with Registered")
        self.token = token
        self._registered(registration_from_proto(first.registered))
        await self._send_status(call)
        outbox = await self._announce(call)
        loop = asyncio.get_running_loop()
        reader = asyncio.ensure_future(self._read(call, p.timeout))
        changed = asyncio.ensure_future(self._status_changed.wait())
        again = asyncio.ensure_future(self._reconnect.wait())
        sending = asyncio.ensure_future(outbox.get())
        next_beat = loop.time() + p.interval
        try:
            while True:
                done, _ = await asyncio.wait({reader, changed, again, sending},
                                             timeout=max(next_beat - loop.time(), 0),
                                             return_when=asyncio.FIRST_COMPLETED)
                if again in done:
                    raise _Reconnect()
                if reader in done:
                    self._handle(reader.result())
                    reader = asyncio.ensure_future(self._read(call, p.timeout))
                if changed in done:
                    await self._send_status(call)
                    changed = asyncio.ensure_future(self._status_changed.wait())
                if sending in done:
                    await call.write(sending.result())
                    sending = asyncio.ensure_future(outbox.get())
                if loop.time() >= next_beat:
                    await call.write(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat()))
                    next_beat = loop.time() + p.interval
        finally:
            reader.cancel()
            changed.cancel()
            again.cancel()
            sending.cancel()

    async def _announce(self, call: Any) -> asyncio.Queue[agent_pb2.AgentMessage]:
        """Tell the CP what this agent answers; the queue of its answers (one that stays
        empty without an admin port)."""
        if self._admin is None:
            return asyncio.Queue()
        self._admin.reset()
        await call.write(agent_pb2.AgentMessage(
            features=agent_pb2.AgentFeatures(envoy_admin_relay=True)))
        return self._admin.outbox

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
        if message is EOF:
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
        self._on_registered(registration, self.token)

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
        elif kind == "envoy_admin_request" and self._admin is not None:
            self._admin.handle(message.envoy_admin_request)


async def first_registration(registered: asyncio.Future[Registration],
                             session: asyncio.Task[None]) -> Registration:
    """The registration, or the Session's reason why there will be none (the zone
    ingress's and egress's agents wait for it so)."""
    waiters: set[asyncio.Future[Any]] = {registered, session}
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if registered.done():
        return registered.result()
    session.result()
    raise AssertionError("the session ended without registering")
