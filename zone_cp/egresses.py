"""Zone egresses on the zone CP: their sessions, their certificates, their Envoy resources.

An egress agent registers like an ingress (``zone_cp.ingresses``, whose registry this one
specialises): the same Session, a **zone token** naming this zone, here with the
``egress`` scope, verified with the global's ``TokenTrust``; a standalone zone refuses it
(no zone tokens). While its session lives its ``ZoneEgress`` is stored (``zone`` set here;
the zone sync publishes it to the global for ``inspect`` and the GUI) and the zone's
sidecars of its ``meshes`` are routed to it when their Mesh asks
(``zone_cp.mesh_state.through_egress``). Its Envoy is admitted to the ADS by node id
``egress:<name>`` and gets ``zone_egress.envoy`` over this zone's external services,
MeshTrafficPermissions and other zones' services.

Unlike an ingress, an egress terminates mesh mTLS for external services, so it has an
identity in each mesh it serves: its agent makes a key per mesh and sends a CSR
(``AgentService.SignCertificate``), signed here with the one URI ``egress_spiffe(mesh,
zone)`` and nothing the CSR asks for (``identity``): no workload's identity, so a
sidecar's RBAC never lets the egress in as a service, and only a mesh the ZoneEgress
names.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gossamer.errors import FailedPrecondition, Forbidden, InvalidResource
from gossamer.model.base import Resource
from gossamer.model.zoneegress import ZoneEgressSpec
from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.tokens import Claims
from proxy.context import Service, egress_spiffe
from proxy.envoy.resources import ProxyResources
from zone_cp.ingresses import IngressRegistry, IngressSession
from zone_cp.updates import Renew
from zone_egress.envoy import EgressContext, EgressMesh, generate_egress

KIND = "ZoneEgress"
EGRESS_SCOPE = "egress"
NODE_PREFIX = "egress:"
PERMISSION_KIND = "MeshTrafficPermission"


@dataclass
class EgressSession(IngressSession):
    """A live egress agent (``ingress`` holds its ZoneEgress)."""

    kind: str = KIND

    @property
    def node_id(self) -> str:
        return f"{NODE_PREFIX}{self.name}"

    @property
    def egress(self) -> ZoneEgressSpec:
        if not isinstance(self.ingress.spec, ZoneEgressSpec):
            raise TypeError("an egress session holds a ZoneEgress")
        return self.ingress.spec


class EgressRegistry(IngressRegistry):
    kind = KIND
    scope = EGRESS_SCOPE
    node_prefix = NODE_PREFIX
    what = "zone egress"
    short = "egress"
    standalone = "a zone egress authenticates with a zone token, and only a global issues them"

    def _stored_spec(self, spec: object) -> ZoneIngressSpec | ZoneEgressSpec:
        if not isinstance(spec, ZoneEgressSpec):
            raise InvalidResource("expected a ZoneEgress document")
        return spec.model_copy(update={"zone": self.zone})

    def _session(self, name: str, claims: Claims, stored: Resource, now: float) -> IngressSession:
        return EgressSession(name, claims, stored, now)

    async def _store(self, session: IngressSession) -> None:
        await self.manager.apply(session.ingress)

    async def run(self) -> None:
        """Nothing to keep current: a ZoneEgress is stored as registered."""
        await asyncio.Event().wait()

    # -- its certificate ---------------------------------------------------------------

    def identity(self, name: str, mesh: str, token_id: str) -> tuple[EgressSession, list[str]]:
        """The live egress ``name`` asking for a certificate in ``mesh`` with the token
        ``token_id``, and the URIs to sign: refused unless it registered with that token
        and its ZoneEgress serves ``mesh``."""
        session = self.sessions.get(f"{NODE_PREFIX}{name}")
        if not isinstance(session, EgressSession):
            raise FailedPrecondition(
                f"zone egress {name!r} is not registered: open a Session first"
            )
        if session.claims.token_id != token_id:
            raise Forbidden("the token is not the one the zone egress registered with")
        if mesh not in session.egress.meshes:
            raise Forbidden(
                f"zone egress {name!r} does not serve mesh {mesh!r} (its "
                f"meshes: {', '.join(session.egress.meshes)}); pass --mesh"
            )
        return session, [egress_spiffe(mesh, self.zone)]

    def renew(self, mesh: str) -> None:
        """``mesh``'s CA changed (``SidecarTrust.follow``): each egress serving it renews,
        and the answer brings it the mesh's new trust bundle."""
        for session in self.sessions.values():
            if isinstance(session, EgressSession) and mesh in session.egress.meshes:
                session.updates.put_nowait(Renew())

    # -- Envoy resources ----------------------------------------------------------------

    def _mesh(self, mesh: str) -> EgressMesh:
        state = self._state
        spec = getattr(state.get("Mesh", mesh), "spec", None)
        routing = getattr(spec, "egress", None)
        services = state.plain_services(mesh)
        external = [s for s in services.values() if s.external is not None]
        remote: list[Service] = []
        if routing is not None and routing.cross_zone:
            remote = [s for s in services.values() if s.external is None and s.remote]
        return EgressMesh(
            external=external, remote=remote, permissions=state.of_kind(PERMISSION_KIND, mesh)
        )

    def egress_context(self, node: str) -> EgressContext | None:
        session = self.sessions.get(node)
        if not isinstance(session, EgressSession):
            return None
        spec = session.egress
        known = {m.name for m in self._state.of_kind("Mesh")}
        return EgressContext(
            name=session.name,
            zone=self.zone,
            address=spec.networking.address,
            port=spec.networking.port,
            meshes={m: self._mesh(m) for m in spec.meshes if m in known},
        )

    def generate(self, node: str) -> ProxyResources | None:
        ctx = self.egress_context(node)
        return None if ctx is None else generate_egress(ctx)
