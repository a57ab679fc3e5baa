"""Dataplane: one workload instance and its sidecar (Kuma's universal shape).

Each inbound is a port where other sidecars reach the workload over mTLS
(``port``), the local application port (``servicePort``) and tags, of which
``gossamer.io/service`` names the service and ``gossamer.io/protocol`` (``http``,
``http2``, ``grpc``, ``tcp``; default ``tcp``) picks the Envoy filter. Outbounds are
optional explicit ports on 127.0.0.1; VIP listeners come from the DNS table.
``transparentProxying`` (Kuma's field, set by ``proxy run --transparent``) says the
workload's traffic is redirected to the sidecar (``gossamer proxy redirect``), so the zone
CP generates the capture listeners on those ports (``proxy.envoy.transparent``).
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator, model_validator

from gossamer.model.address import Address, IPAddress
from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Port, Tags
from gossamer.model.labels import PROTOCOL_TAG, SERVICE_TAG

PROTOCOLS = ("http", "http2", "grpc", "tcp")


def _check_protocol(tags: dict[str, str]) -> None:
    proto = tags.get(PROTOCOL_TAG)
    if proto is not None and proto not in PROTOCOLS:
        raise ValueError(f"tag {PROTOCOL_TAG} must be one of {', '.join(PROTOCOLS)}")


class Inbound(BaseModel):
    model_config = SPEC_CONFIG

    port: Port
    service_port: Port | None = None
    service_address: IPAddress | None = None
    address: IPAddress | None = None
    tags: Tags

    @field_validator("tags")
    @classmethod
    def _service(cls, tags: dict[str, str]) -> dict[str, str]:
        if not tags.get(SERVICE_TAG):
            raise ValueError(f"an inbound needs the tag {SERVICE_TAG}")
        _check_protocol(tags)
        return tags

    @property
    def service(self) -> str:
        return self.tags[SERVICE_TAG]

    @property
    def protocol(self) -> str:
        return self.tags.get(PROTOCOL_TAG, "tcp")


class Outbound(BaseModel):
    model_config = SPEC_CONFIG

    port: Port
    address: IPAddress | None = None
    tags: Tags

    @field_validator("tags")
    @classmethod
    def _service(cls, tags: dict[str, str]) -> dict[str, str]:
        if not tags.get(SERVICE_TAG):
            raise ValueError(f"an outbound needs the tag {SERVICE_TAG}")
        return tags

    @property
    def service(self) -> str:
        return self.tags[SERVICE_TAG]


class Admin(BaseModel):
    model_config = SPEC_CONFIG

    port: Port = 9901


class TransparentProxying(BaseModel):
    """Where the redirect sends captured traffic: outbound on 127.0.0.1, inbound on
    0.0.0.0 (``proxy.redirect.defaults``: 15001 and 15006)."""

    model_config = SPEC_CONFIG

    redirect_port_outbound: Port = 15001
    redirect_port_inbound: Port = 15006

    @model_validator(mode="after")
    def _distinct(self) -> TransparentProxying:
        if self.redirect_port_outbound == self.redirect_port_inbound:
            raise ValueError("redirectPortOutbound and redirectPortInbound must differ")
        return self


class Networking(BaseModel):
    model_config = SPEC_CONFIG

    address: Address
    advertised_address: Address | None = None
    inbound: list[Inbound] = Field(default_factory=list, max_length=64)
    outbound: list[Outbound] = Field(default_factory=list, max_length=1024)
    admin: Admin | None = None
    transparent_proxying: TransparentProxying | None = None

    @model_validator(mode="after")
    def _ports(self) -> Networking:
        seen: set[tuple[str | None, int]] = set()
        capture = self._capture_ports()
        for i, ib in enumerate(self.inbound):
            if (ib.address, ib.port) in seen:
                raise ValueError(f"inbound[{i}].port {ib.port} is used twice")
            if ib.port in capture:
                raise ValueError(f"inbound[{i}].port {ib.port} is a transparentProxying "
                                 "redirect port")
            seen.add((ib.address, ib.port))
        outs: set[tuple[str | None, int]] = set()
        for i, ob in enumerate(self.outbound):
            if (ob.address, ob.port) in outs:
                raise ValueError(f"outbound[{i}].port {ob.port} is used twice")
            outs.add((ob.address, ob.port))
        return self

    def _capture_ports(self) -> set[int]:
        tp = self.transparent_proxying
        return set() if tp is None else {tp.redirect_port_outbound, tp.redirect_port_inbound}


class DataplaneSpec(BaseModel):
    model_config = SPEC_CONFIG

    networking: Networking

    @property
    def services(self) -> list[str]:
        return sorted({ib.service for ib in self.networking.inbound})


DESCRIPTOR = KindDescriptor(
    name="Dataplane",
    spec_model=DataplaneSpec,
    scope=Scope.MESH,
    path="dataplanes",
    noun="dataplane",
    alias="dp",
    sync=SyncDirection.ZONE_TO_GLOBAL,
    spec_inline=True,
    description="a workload instance, its inbound services and its sidecar",
)
