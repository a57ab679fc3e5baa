"""The zone egress agent: register the ZoneEgress, hold a certificate per mesh, run Envoy.

Built like the ingress agent (``zone_ingress.agent``: the same Session, registered with
a ZoneEgress document and a zone token with the ``egress`` scope; the same bootstrap,
token refresh and Envoy supervision), plus what the ingress has no use for: an
identity. The egress terminates its zone's sidecars' mesh mTLS for external services,
so for each mesh it serves (``--mesh``) it makes a key of its own (in a child process,
``proxy.agent.keys``, kept in memory only), has the zone CP sign its CSR (the CP names
the identity: ``spiffe://<mesh>/zone-egress/<zone>``) and renews it like a sidecar
(``proxy.agent.rotation.Rotator``, one per mesh). Its SDS server serves, per mesh,
``identity:<mesh>`` and ``trust_bundle:<mesh>`` (``zone_egress.envoy``'s names) to its
Envoy over a unix socket in the 0700 work directory. No workload's key is ever here.

The trust bundle of a mesh comes with each signed certificate: when a mesh's CA changes
the CP asks the egress to renew (``Renew`` on the Session), and it renews every mesh's.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, replace
from typing import Any

from proxy.agent import bootstrap, sds_state
from proxy.agent.cp_client import AgentClient, Registration
from proxy.agent.envoy_process import EnvoyCommand, EnvoySupervisor, parent_death_wrapper
from proxy.agent.errors import AgentError, ControlPlaneRefused
from proxy.agent.identity import Identity, SignedCertificate
from proxy.agent.parts import Parts
from proxy.agent.rotation import Rotator
from proxy.agent.sds_server import SecretServer, cleanup_socket, socket_path
from proxy.agent.session import Session, first_registration
from proxy.agent.settings import EnvoyAgentSettings, checked_registration
from proxy.agent.token_file import EGRESS_TOKEN
from proxy.agent.token_refresh import TokenRefresher
from proxy.names import egress_identity_secret, egress_trust_secret

log = logging.getLogger(__name__)

EGRESS_METADATA = "gossamer.io/zone-egress"
STARTUP_RETRY_INITIAL = 0.5
STARTUP_RETRY_MAX = 30.0


@dataclass(frozen=True, kw_only=True)
class EgressSettings(EnvoyAgentSettings):
    """One egress's inputs: what every Envoy agent has (the token is a zone token), where
    Envoy listens, where the zone's sidecars dial it, and the meshes it serves."""

    name: str
    address: str
    port: int
    advertised: tuple[str, int] | None
    meshes: tuple[str, ...]
    checked_json: str | None = None

    def document(self) -> dict[str, Any]:
        networking: dict[str, Any] = {"address": self.address, "port": self.port}
        if self.advertised is not None:
            networking["advertisedAddress"], networking["advertisedPort"] = self.advertised
        return {
            "type": "ZoneEgress",
            "name": self.name,
            "networking": networking,
            "meshes": list(self.meshes),
        }

    def checked(self) -> EgressSettings:
        return replace(self, checked_json=self.registration_json())

    def registration_json(self) -> str:
        """The document, validated here so a bad flag is an input error, not a refusal."""
        if self.checked_json is not None:
            return self.checked_json
        return checked_registration(self.document(), "ZoneEgress", "zone egress")


def egress_bootstrap(
    settings: EgressSettings, reg: Registration, token: str, sds_socket: str
) -> dict[str, Any]:
    """The sidecar's bootstrap (with its SDS cluster, to the egress's own SDS server) and
    the egress's name as node metadata."""
    doc = bootstrap.bootstrap(
        bootstrap.BootstrapParams(
            node_id=reg.node_id,
            mesh="",
            dataplane=reg.name,
            zone=reg.zone,
            service=reg.name,
            cp_host=settings.cp.host,
            cp_port=settings.cp.port,
            cp_alternates=tuple((a.host, a.port) for a in settings.cp_alternates),
            cp_ca_pem=settings.cp_ca_pem.decode(),
            token=token,
            sds_socket=sds_socket,
            admin_port=settings.admin_port,
        )
    )
    doc["node"]["metadata"] = {EGRESS_METADATA: reg.name}
    return doc


class EgressAgent:
    def __init__(self, settings: EgressSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self.sds = SecretServer()
        self.client: AgentClient | None = None
        self.session: Session | None = None
        self.envoy: EnvoySupervisor | None = None
        self.tokens: TokenRefresher | None = None
        self.registration: Registration | None = None
        self.rotators: dict[str, Rotator] = {}
        self.identities: dict[str, tuple[Identity, bytes]] = {}  # mesh: (identity, bundle)
        self._parts = Parts()

    def _publish(self) -> None:
        entries = {}
        for mesh, (ident, bundle) in self.identities.items():
            entries[egress_identity_secret(mesh)] = sds_state.entry(
                sds_state.identity_secret(
                    ident.chain_pem, ident.key_pem(), name=egress_identity_secret(mesh)
                )
            )
            if bundle:
                trust = sds_state.trust_secret(bundle)
                trust.name = egress_trust_secret(mesh)
                entries[egress_trust_secret(mesh)] = sds_state.entry(trust)
        self.sds.update(entries)

    def _on_identity(self, mesh: str, identity: Identity, bundle: bytes) -> None:
        held = self.identities.get(mesh)
        self.identities[mesh] = (identity, bundle or (held[1] if held else b""))
        self._publish()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop(drain=False)
            raise

    async def _start(self) -> None:
        s = self.settings
        registration_json = s.registration_json()
        s.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        s.work_dir.chmod(0o700)
        self.client = client = AgentClient(
            s.cp, s.cp_ca_pem, s.token, ca_file=s.cp_ca_file, alternates=s.cp_alternates
        )
        self.tokens = tokens = TokenRefresher(
            s.token_file, client, what=EGRESS_TOKEN, write_bootstrap=self._write_bootstrap
        )
        self.session = tokens.session = Session(
            client,
            registration_json,
            on_trust_bundle=lambda _: None,
            on_renew=self._on_renew,
            before_connect=lambda: tokens.reread("connecting"),
            on_registered=tokens.registered,
            policy=s.session,
            rng=self._rng,
        )
        session_task = self._parts.spawn(self.session.run(), "egress-session")
        log.info("registering zone egress %s with the control plane %s", s.name, s.cp)
        self.registration = reg = await first_registration(self.session.registered, session_task)
        for mesh in s.meshes:
            self.rotators[mesh] = rotator = self._rotator(mesh, reg)
            identity = await self._with_retry(rotator, mesh)
            log.info(
                "certificate for %s valid until %s",
                ", ".join(identity.uris),
                identity.not_after.isoformat(),
            )
        await self.sds.start(socket_path(s.work_dir))
        tokens.envoy_token = self.session.token or client.token
        self._write_bootstrap(tokens.envoy_token)
        self.envoy = tokens.envoy = EnvoySupervisor(
            EnvoyCommand(
                binary=s.envoy_binary,
                bootstrap=s.bootstrap_path,
                work_dir=s.work_dir,
                concurrency=s.concurrency,
                log_level=s.envoy_log_level,
                drain_time=s.drain_time,
                wrapper=parent_death_wrapper(),
            ),
            admin_port=s.admin_port,
            policy=s.supervision,
            rng=self._rng,
        )
        self._parts.spawn(self.envoy.run(), "egress-envoy")
        for mesh, rotator in self.rotators.items():
            self._parts.spawn(rotator.run(), f"egress-rotation-{mesh}")
        self._parts.spawn(tokens.run(), "egress-token")
        log.info(
            "zone egress %s of zone %s listening on %s:%d for meshes %s",
            reg.name,
            reg.zone,
            s.address,
            s.port,
            ", ".join(s.meshes),
        )

    def _on_renew(self) -> None:
        """A mesh's CA changed: renew every certificate (the CP does not say which mesh;
        each answer carries its mesh's current bundle)."""
        for rotator in self.rotators.values():
            rotator.request_renewal()

    def _rotator(self, mesh: str, reg: Registration) -> Rotator:
        client, tokens = self.client, self.tokens
        assert client is not None and tokens is not None

        async def sign(csr: bytes) -> SignedCertificate:
            return await client.sign(mesh, reg.name, csr, await tokens.sign_token())

        return Rotator(
            f"{reg.name}.{mesh}",
            sign,
            lambda ident, bundle: self._on_identity(mesh, ident, bundle),
            rng=self._rng,
        )

    async def _with_retry(self, rotator: Rotator, mesh: str) -> Identity:
        """The first certificate of ``mesh``; a refusal ends the agent."""
        delay = STARTUP_RETRY_INITIAL
        while True:
            try:
                return await rotator.issue()
            except ControlPlaneRefused:
                raise
            except AgentError as exc:
                log.warning(
                    "getting the certificate of mesh %s failed: %s; retrying", mesh, exc.detail
                )
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, STARTUP_RETRY_MAX)

    def reload(self) -> None:
        if self.tokens is not None:
            self.tokens.hangup()

    def _write_bootstrap(self, token: str) -> None:
        assert self.registration is not None and self.sds.path is not None
        bootstrap.write(
            self.settings.bootstrap_path,
            egress_bootstrap(self.settings, self.registration, token, str(self.sds.path)),
        )

    async def wait(self) -> None:
        await self._parts.first_end()

    async def stop(self, drain: bool = True) -> None:
        if self.envoy is not None:
            await self.envoy.stop(drain=drain)
        await self._parts.cancel()
        await self.sds.stop()
        if self.sds.path is not None:
            cleanup_socket(self.sds.path, self.settings.work_dir)
        if self.client is not None:
            await self.client.close()
