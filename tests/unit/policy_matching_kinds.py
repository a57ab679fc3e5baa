"""What the policy-matching tests share: a small test registry (``REGISTRY``) with three
stand-in kinds besides the real ones, so that list fields, model defaults, exclusive
fields, route-shaped ``to[].rules`` and default-only specs are covered whatever the real
kind modules look like today; and builders of Dataplanes, policies and targetRefs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from gossamer.model import dataplane as dataplane_kind
from gossamer.model import meshtimeout
from gossamer.model.base import KindDescriptor, Resource, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG
from gossamer.model.meshtimeout import MeshTimeoutConf
from gossamer.model.policy import MAX_ITEMS, MESH_TARGET, From, PolicySpec, TargetRef, To
from gossamer.model.registry import Registry, parse_document
from gossamer.policy import match_policies
from gossamer.policy.merge import conf_data
from tests import builders
from tests.builders import inbound

SVC = "gossamer.io/service"


class ListConf(BaseModel):
    """A conf with a list, a non-None default and two mutually exclusive fields."""

    model_config = SPEC_CONFIG

    backends: list[str] | None = None
    enabled: bool = True
    labels: dict[str, str] | None = None
    left: str | None = None
    right: str | None = None

    @model_validator(mode="after")
    def _exclusive(self) -> ListConf:
        if self.left is not None and self.right is not None:
            raise ValueError("left and right are exclusive")
        return self


class ListSpec(PolicySpec):
    to: list[To[ListConf]] | None = Field(None, max_length=MAX_ITEMS)
    from_: list[From[ListConf]] | None = Field(None, alias="from", max_length=MAX_ITEMS)


class WholeSpec(BaseModel):
    """Default-only, like MeshTrace/MeshMetric."""

    model_config = SPEC_CONFIG

    target_ref: TargetRef = Field(default=MESH_TARGET)
    default: ListConf


class FakeRouteRule(BaseModel):
    model_config = SPEC_CONFIG

    path: str
    backend: str


class FakeRouteTo(BaseModel):
    model_config = SPEC_CONFIG

    target_ref: TargetRef
    rules: list[FakeRouteRule]


class FakeRouteSpec(PolicySpec):
    to: list[FakeRouteTo] | None = None


def _descriptor(name: str, model: type[BaseModel]) -> KindDescriptor:
    return KindDescriptor(name=name, spec_model=model, scope=Scope.MESH, path=name.lower() + "s",
                          noun=name.lower(), alias=name.lower()[:6], sync=SyncDirection.LOCAL,
                          is_policy=True)


REGISTRY = Registry([dataplane_kind.DESCRIPTOR, meshtimeout.DESCRIPTOR,
                     _descriptor("TestList", ListSpec), _descriptor("TestWhole", WholeSpec),
                     _descriptor("TestRoute", FakeRouteSpec)])


def dataplane(name: str = "web-1", inbounds: list[dict[str, Any]] | None = None,
              outbounds: list[dict[str, Any]] | None = None, mesh: str = "default") -> Resource:
    if inbounds is None:
        inbounds = [inbound("web", 8080, None, version="v1")]
    return builders.dataplane(name, mesh=mesh, address="10.0.0.1", inbounds=inbounds,
                              outbounds=outbounds or [], registry=REGISTRY)


def policy(name: str, target: dict[str, Any] | None = None, *, kind: str = "MeshTimeout",
           origin: str | None = None, zone: str | None = None, mesh: str = "default",
           **sections: Any) -> Resource:
    labels = {}
    if origin:
        labels["gossamer.io/origin"] = origin
    if zone:
        labels["gossamer.io/zone"] = zone
    spec: dict[str, Any] = {"targetRef": target or {"kind": "Mesh"}}
    spec.update({("from" if k == "from_" else k): v for k, v in sections.items()})
    return parse_document({"type": kind, "name": name, "mesh": mesh, "labels": labels,
                           "spec": spec}, REGISTRY)


def to_(target: dict[str, Any], **default: Any) -> dict[str, Any]:
    return {"targetRef": target, "default": default}


MESH = {"kind": "Mesh"}


def svc(name: str) -> dict[str, Any]:
    return {"kind": "MeshService", "name": name}


def outbound(policies: list[Resource], service: str = "backend", **kw: Any) -> dict[str, Any]:
    """The merged MeshTimeout conf for ``service`` as the dict of fields it sets."""
    result = match_policies(kw.pop("dp", None) or dataplane(), policies,
                            destinations=[service], **kw)
    merged = result.kind("MeshTimeout").outbound(service)
    return {} if merged is None else conf_data(merged.model(MeshTimeoutConf))

