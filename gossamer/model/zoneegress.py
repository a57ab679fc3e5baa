"""ZoneEgress: the place a zone's traffic leaves it through (``gossamer egress run``).

A separate kind from ZoneIngress (not a ZoneIngress with a role), as in Kuma: an
ingress's document is what other zones route to (its ``availableServices``, its
advertised address) and the global hands it to every zone; an egress is dialled only by
its own zone's sidecars, offers no services and goes to the global for ``inspect`` and
the GUI only. Sharing one kind would make every reader of ZoneIngress filter egresses
out, or send other zones' traffic to one.

The zone CP stores it while its agent's session lives (``zone_cp.egresses``) and fills
``zone``; sidecars of its ``meshes`` whose Mesh has ``routing.zoneEgress`` send
external-service traffic (and, when asked, cross-zone traffic) to ``dialled()`` over
mesh mTLS.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from gossamer.model.address import Address
from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Name, Port

DEFAULT_PORT = 10002


class EgressNetworking(BaseModel):
    """Where Envoy listens (``address`` may be ``0.0.0.0``) and where the zone's sidecars
    dial it (``advertisedAddress``/``advertisedPort``, when not there)."""

    model_config = SPEC_CONFIG

    address: Address
    port: Port = DEFAULT_PORT
    advertised_address: Address | None = None
    advertised_port: Port | None = None

    def dialled(self) -> tuple[str, int]:
        return self.advertised_address or self.address, self.advertised_port or self.port


class ZoneEgressSpec(BaseModel):
    model_config = SPEC_CONFIG

    zone: Name | None = None
    networking: EgressNetworking
    # The meshes it carries traffic of: it holds a certificate of its own in each
    # (``gossamer egress run --mesh``), and only their sidecars are sent to it.
    meshes: list[Name] = Field(default_factory=lambda: ["default"], min_length=1, max_length=64)


DESCRIPTOR = KindDescriptor(
    name="ZoneEgress",
    spec_model=ZoneEgressSpec,
    scope=Scope.GLOBAL,
    path="zone-egresses",
    noun="zoneegress",
    alias="ze",
    sync=SyncDirection.ZONE_TO_GLOBAL,
    spec_inline=True,
    description="a zone's egress: where its traffic to external services and other zones leaves",
)
