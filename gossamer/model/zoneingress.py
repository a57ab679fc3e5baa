"""ZoneIngress: a zone's entry point for other zones, and the services behind it.

The zone CP keeps ``availableServices`` up to date (per mesh, with instance counts and
the ports the service is called on); the global passes each zone's ingresses to the
other zones, which send cross-zone traffic to ``advertisedAddress:advertisedPort`` with
the weight of ``instances``, and listen on the service's VIP at each of its ``ports``.
An available service without ``ports`` (from a zone of an older version) is reached on
port 80 only, as before.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from gossamer.model.address import Address
from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Name, Port, Tags


class IngressNetworking(BaseModel):
    model_config = SPEC_CONFIG

    address: Address
    port: Port = 10001
    advertised_address: Address | None = None
    advertised_port: Port | None = None


class ServicePort(BaseModel):
    """A port the service's instances are called on (an inbound's ``servicePort``, else
    its ``port``) and that inbound's protocol."""

    model_config = SPEC_CONFIG

    port: Port
    protocol: Literal["http", "http2", "grpc", "tcp"] = "tcp"


class AvailableService(BaseModel):
    model_config = SPEC_CONFIG

    mesh: Name = "default"
    tags: Tags
    instances: int = Field(1, ge=0, le=1_000_000)
    ports: list[ServicePort] = Field(default_factory=list, max_length=1024)

    @field_validator("ports")
    @classmethod
    def _distinct(cls, ports: list[ServicePort]) -> list[ServicePort]:
        seen = [p.port for p in ports]
        if len(set(seen)) != len(seen):
            raise ValueError("each port may appear once")
        return ports


class ZoneIngressSpec(BaseModel):
    model_config = SPEC_CONFIG

    zone: Name | None = None
    networking: IngressNetworking
    available_services: list[AvailableService] = Field(default_factory=list, max_length=100_000)


DESCRIPTOR = KindDescriptor(
    name="ZoneIngress",
    spec_model=ZoneIngressSpec,
    scope=Scope.GLOBAL,
    path="zone-ingresses",
    noun="zoneingress",
    alias="zi",
    sync=SyncDirection.ZONE_TO_GLOBAL,
    spec_inline=True,
    description="a zone's ingress for cross-zone traffic and the services it offers",
)
