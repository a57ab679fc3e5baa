"""The sidecar agent as one component: register, get a certificate, serve SDS, run Envoy.

``Agent.start`` goes through the startup in order — open the Session and wait for
``Registered`` (the ``.mesh`` resolver is already listening; DNS tables from the Session
update it); have the CSR signed; start the SDS server with the key, the certificate and
the trust bundle; write Envoy's bootstrap; start Envoy — and stops whatever it started
if a step fails. Then four tasks run side by side: the Session (reconnecting by itself;
trust bundle updates go to SDS, ``Renew`` goes to the Rotator), the Rotator (renewals go
to SDS), the Envoy supervisor and the ``TokenRefresher``, which re-reads
``--token-file`` (at each Session connect, before each CSR, on SIGHUP, before the token
expires) and moves the Session and then Envoy (a hot restart) to a new token. What SDS
serves is reported to the control plane on the Session (``StatusReport``): a new
certificate as soon as SDS has it; a new trust bundle's digest only once every Envoy
stream that subscribes to it has ACKed it (``SecretServer.watch_trust``), since a CA
rotation moves on when every sidecar reports the bundle. Until Envoy asks for the bundle
at all (it starts after the first certificate) the bundle handed to SDS is reported; a
bundle Envoy refuses is logged and the previous digest, the one Envoy still has, stays
reported. ``wait`` returns when one of them ends for good and re-raises why; ``stop``
drains Envoy and closes everything. ``run_agent`` is the process around it: signals
(SIGHUP: ``reload``), and the exit code.

A control plane that is down at startup is waited for (with backoff and a log line per
attempt); a control plane that refuses is final at startup (``ControlPlaneRefused``).
Once Envoy runs, the control plane going away never touches Envoy: it keeps its last
configuration until the Session and its own ADS stream reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gossamer.process import run_until_signal
from proxy.agent import bootstrap, sds_state, vip_route
from proxy.agent.cp_client import (
    AgentClient,
    DnsTable,
    Registration,
    StatusReport,
)
from proxy.agent.envoy_process import (
    EnvoyCommand,
    EnvoySupervisor,
    parent_death_wrapper,
)
from proxy.agent.errors import AgentError, ControlPlaneRefused
from proxy.agent.identity import Identity, SignedCertificate, bundle_digest, check_bundle
from proxy.agent.keys import KeyRequest, child_request
from proxy.agent.parts import Parts
from proxy.agent.resolver import MeshResolver
from proxy.agent.rotation import Rotator
from proxy.agent.sds_server import SecretServer, cleanup_socket, socket_path
from proxy.agent.session import Session
from proxy.agent.sidecar_settings import AgentSettings as AgentSettings  # re-exported
from proxy.agent.token_file import DATAPLANE_TOKEN
from proxy.agent.token_refresh import TokenRefresher

log = logging.getLogger(__name__)

STARTUP_RETRY_INITIAL = 0.5
STARTUP_RETRY_MAX = 30.0


class Agent:
    def __init__(self, settings: AgentSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self.sds = SecretServer()
        self.resolver = MeshResolver(settings.dns)
        self.client: AgentClient | None = None
        self.session: Session | None = None
        self.rotator: Rotator | None = None
        self.envoy: EnvoySupervisor | None = None
        self.tokens: TokenRefresher | None = None
        self.registration: Registration | None = None
        self.dns_table: DnsTable | None = None
        self._identity: Identity | None = None
        self._trust_pem = b""
        self._reported_digest: str | None = None
        self._parts = Parts()
        self._first_key: asyncio.Future[KeyRequest] | None = None
        self.sds.watch_trust(self._on_trust_ack)

    # -- what SDS serves --------------------------------------------------------------

    def _publish(self) -> None:
        ident = self._identity
        self.sds.update(sds_state.secret_entries(
            ident.chain_pem if ident else None, ident.key_pem() if ident else None,
            self._trust_pem or None, self.settings.metrics_tls))
        self._report()

    def _report(self) -> None:
        """Tell the control plane the chain SDS serves and the bundle Envoy has (nothing
        before the first certificate: that one is reported as it arrives)."""
        if self.session is None or self._identity is None:
            return
        digest = sds_state.digest_to_report(self.sds.trust_ack(),
                                            bundle_digest(self._trust_pem),
                                            self._reported_digest)
        self._reported_digest = digest
        self.session.report(StatusReport(self._identity.chain_pem, digest))

    def _on_trust_ack(self, ack: sds_state.TrustAck) -> None:
        if ack.phase is sds_state.TrustPhase.REFUSED:
            log.error("Envoy refused the trust bundle (secret version %s): %s; still "
                      "reporting the bundle it has (digest %s)", ack.version, ack.error,
                      (self._reported_digest or "none")[:16])
        self._report()

    def _on_identity(self, identity: Identity, trust_pem: bytes) -> None:
        self._identity = identity
        if trust_pem:
            self._trust_pem = trust_pem
        self._publish()

    def _on_renew(self) -> None:
        if self.rotator is not None:
            self.rotator.request_renewal()
        # Before the Rotator exists the first certificate is yet to be asked for, from
        # the CA as it is now: nothing to renew.

    def _on_trust_bundle(self, pem: bytes) -> None:
        try:
            check_bundle(pem)
        except AgentError as exc:
            log.error("ignoring a trust bundle update: %s", exc.detail)
            return
        self._trust_pem = pem
        self._publish()
        log.info("trust bundle updated")

    def _on_dns_table(self, table: DnsTable) -> None:
        if self.resolver.update(table):
            self.dns_table = table

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop(drain=False)
            raise

    async def _start(self) -> None:
        s = self.settings
        s.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        s.work_dir.chmod(0o700)
        # The first key is made while the agent registers: the child's interpreter start
        # is off the path to the first certificate. Its common name is informational (the
        # CP names the identity), so the Dataplane's name serves before the CP's answer.
        self._first_key = asyncio.ensure_future(child_request(s.dataplane.name))
        await self.resolver.start()  # first: a taken --dns-addr fails before registering
        dataplane = await vip_route.ready(s.dataplane, s.vip)  # can Envoy bind the VIPs?
        self.client = AgentClient(s.cp, s.cp_ca_pem, s.token, ca_file=s.cp_ca_file,
                                  alternates=s.cp_alternates)
        self.tokens = tokens = TokenRefresher(s.token_file, self.client, what=DATAPLANE_TOKEN,
                                              write_bootstrap=self._write_bootstrap)
        self.session = tokens.session = Session(
            self.client, dataplane.registration_json(),
            on_trust_bundle=self._on_trust_bundle, on_dns_table=self._on_dns_table,
            on_renew=self._on_renew, before_connect=lambda: tokens.reread("connecting"),
            on_registered=tokens.registered, policy=s.session, rng=self._rng,
            admin_port=s.admin_port)  # answers inspect's Envoy admin pages
        session_task = self._parts.spawn(self.session.run(), "agent-session")
        log.info("registering %s.%s with the control plane %s", s.dataplane.mesh,
                 s.dataplane.name, s.cp)
        self.registration = reg = await self._first(self.session.registered, session_task)

        client = self.client

        async def sign(csr: bytes) -> SignedCertificate:
            return await client.sign(reg.mesh, reg.name, csr, await tokens.sign_token())

        self.rotator = Rotator(reg.name, sign, self._on_identity, rng=self._rng,
                               keys=self._keys)
        identity = await self._with_retry(self.rotator.issue, "the certificate")
        log.info("certificate for %s valid until %s", ", ".join(identity.uris) or reg.name,
                 identity.not_after.isoformat())

        sock = socket_path(s.work_dir)
        await self.sds.start(sock)
        tokens.envoy_token = self.session.token or client.token
        self._write_bootstrap(tokens.envoy_token)
        self.envoy = tokens.envoy = EnvoySupervisor(EnvoyCommand(
            binary=s.envoy_binary, bootstrap=s.bootstrap_path, work_dir=s.work_dir,
            concurrency=s.concurrency, log_level=s.envoy_log_level, drain_time=s.drain_time,
            wrapper=parent_death_wrapper()),
            admin_port=s.admin_port, policy=s.supervision, rng=self._rng)
        self._parts.spawn(self.envoy.run(), "agent-envoy")
        self._parts.spawn(self.rotator.run(), "agent-rotation")
        self._parts.spawn(tokens.run(), "agent-token")

    async def _keys(self, common_name: str) -> KeyRequest:
        """The key made while registering for the first certificate, a new one after."""
        first, self._first_key = self._first_key, None
        if first is not None:
            return await first
        return await child_request(common_name)

    def reload(self) -> None:
        """SIGHUP: read the token file again now."""
        if self.tokens is not None:
            self.tokens.hangup()

    def _write_bootstrap(self, token: str) -> None:
        """Envoy's bootstrap for the registration, with ``token`` for its ADS stream."""
        s, reg, sock = self.settings, self.registration, self.sds.path
        assert reg is not None and sock is not None, "written once registered, SDS started"
        bootstrap.write(s.bootstrap_path, bootstrap.bootstrap(bootstrap.BootstrapParams(
            node_id=reg.node_id, mesh=reg.mesh, dataplane=reg.name, zone=reg.zone,
            service=(s.dataplane.services or (reg.name,))[0],
            cp_host=s.cp.host, cp_port=s.cp.port, cp_ca_pem=s.cp_ca_pem.decode(),
            cp_alternates=tuple((a.host, a.port) for a in s.cp_alternates),
            token=token, sds_socket=str(sock), admin_port=s.admin_port)))

    async def _first(self, registered: asyncio.Future[Registration],
                     session_task: asyncio.Task[None]) -> Registration:
        """The registration, or the Session's reason why there will be none."""
        waiters: set[asyncio.Future[Any]] = {registered, session_task}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if registered.done():
            return registered.result()
        session_task.result()
        raise AssertionError("the session ended without registering")

    async def _with_retry(self, call: Callable[[], Awaitable[Identity]],
                          what: str) -> Identity:
        """Retry ``call`` while the CP is unavailable; a refusal ends the agent."""
        delay = STARTUP_RETRY_INITIAL
        while True:
            try:
                return await call()
            except ControlPlaneRefused:
                raise
            except AgentError as exc:
                log.warning("getting %s failed: %s; retrying", what, exc.detail)
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, STARTUP_RETRY_MAX)

    async def wait(self) -> None:
        """Return when a part ends for good (Envoy cannot start); re-raise why."""
        await self._parts.first_end()

    async def stop(self, drain: bool = True) -> None:
        if self.envoy is not None:
            await self.envoy.stop(drain=drain)
        await self._parts.cancel()
        await self._drop_first_key()
        await self.sds.stop()
        await self.resolver.stop()
        if self.sds.path is not None:
            cleanup_socket(self.sds.path, self.settings.work_dir)
        if self.client is not None:
            await self.client.close()


    async def _drop_first_key(self) -> None:
        """End the first key's child if the agent stops before it was used."""
        first, self._first_key = self._first_key, None
        if first is None:
            return
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError, AgentError):
            await (await first).close()


class Supervised(Protocol):
    """What ``run_agent`` runs: this ``Agent``, or the zone ingress's (``zone_ingress``)."""

    async def start(self) -> None: ...

    async def wait(self) -> None: ...

    async def stop(self, drain: bool = True) -> None: ...

    def reload(self) -> None: ...


async def run_agent(agent: Supervised) -> None:
    """Run until SIGINT/SIGTERM (drain and return) or a failure (stop without draining,
    re-raise it): ``gossamer.process.run_until_signal``; SIGHUP makes the agent read its
    token file again."""
    await run_until_signal(agent, abort=lambda: agent.stop(drain=False), reload=agent.reload)
