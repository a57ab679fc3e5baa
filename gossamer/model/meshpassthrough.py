"""MeshPassthrough: which destinations outside the mesh a transparent proxy may reach.

A sidecar with the transparent proxy captures all of its workload's outbound TCP. What is
no mesh service goes to its original destination (passthrough) or is closed; the Mesh's
``networking.outbound.passthrough`` says which for every proxy, and a MeshPassthrough
says it for the proxies it selects, finer:

- ``passthroughMode: All``: every non-mesh destination passes;
- ``None``: none does;
- ``Matched`` (the default when a policy applies): only those in ``matches``, each an
  ``IP`` or a ``CIDR`` (with a ``port``, or any port), or a ``Domain`` — matched on the
  TLS SNI (``protocol: tls``, port 443 unless given) or on the HTTP ``Host``
  (``protocol: http``, ``http2`` or ``grpc``, port 80 unless given). A leading ``*.``
  matches every name under the domain. A domain cannot be matched for plain ``tcp``:
  nothing in the connection names it.

A property of the proxy, not of a peer: ``default`` and no to/from. Lists merge as
every policy's do (``gossamer.policy.merge``): a more specific policy's ``matches``
replaces a less specific one's.
"""

from __future__ import annotations

import enum
import ipaddress
import re

from pydantic import BaseModel, Field, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Port
from gossamer.model.policy import PolicySpec
from gossamer.model.policy_fields import fail_at

MAX_MATCHES = 256
_DOMAIN_RE = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class PassthroughMode(enum.StrEnum):
    ALL = "All"
    NONE = "None"
    MATCHED = "Matched"


class MatchType(enum.StrEnum):
    DOMAIN = "Domain"
    IP = "IP"
    CIDR = "CIDR"


class MatchProtocol(enum.StrEnum):
    TCP = "tcp"
    TLS = "tls"
    HTTP = "http"
    HTTP2 = "http2"
    GRPC = "grpc"


HTTP_MATCH_PROTOCOLS = frozenset({MatchProtocol.HTTP, MatchProtocol.HTTP2,
                                  MatchProtocol.GRPC})


class PassthroughMatch(BaseModel):
    model_config = SPEC_CONFIG

    type: MatchType
    value: str = Field(min_length=1, max_length=253)
    port: Port | None = None
    protocol: MatchProtocol = MatchProtocol.TCP

    @model_validator(mode="after")
    def _value(self) -> PassthroughMatch:
        if self.type is MatchType.DOMAIN:
            if not _DOMAIN_RE.match(self.value):
                fail_at("value", "expected a lower-case DNS name like api.example.com, "
                                 "or *.example.com", self.value)
            if self.protocol is MatchProtocol.TCP:
                fail_at("protocol", "a Domain is matched by the TLS SNI or the HTTP Host: "
                                    "use protocol tls, http, http2 or grpc", self.protocol.value)
            return self
        try:
            if self.type is MatchType.IP:
                ipaddress.ip_address(self.value)
            else:
                ipaddress.ip_network(self.value, strict=True)
        except ValueError:
            what = "an IP address like 10.0.0.1" if self.type is MatchType.IP else (
                "a network like 10.0.0.0/8 (no host bits set)")
            fail_at("value", f"expected {what}", self.value)
        return self

    def default_port(self) -> int | None:
        """The port a match without one means: a domain's protocol port, else any."""
        if self.port is not None or self.type is not MatchType.DOMAIN:
            return self.port
        return 443 if self.protocol is MatchProtocol.TLS else 80


class MeshPassthroughConf(BaseModel):
    model_config = SPEC_CONFIG

    passthrough_mode: PassthroughMode | None = None
    matches: list[PassthroughMatch] | None = Field(None, max_length=MAX_MATCHES)

    def mode(self) -> PassthroughMode:
        return self.passthrough_mode or PassthroughMode.MATCHED


class MeshPassthroughSpec(PolicySpec):
    default: MeshPassthroughConf

    @model_validator(mode="after")
    def _has_something(self) -> MeshPassthroughSpec:
        # Overrides the base check for to/from/rules: the required default is enough.
        return self


DESCRIPTOR = KindDescriptor(
    name="MeshPassthrough",
    spec_model=MeshPassthroughSpec,
    scope=Scope.MESH,
    path="meshpassthroughs",
    noun="meshpassthrough",
    alias="mpass",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="which destinations outside the mesh a transparent proxy may reach",
)
