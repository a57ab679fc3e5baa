"""The targetRef model shared by every policy kind.

A policy says *which proxies* it applies to (``spec.targetRef``) and then either
*what they send to* (``to[]``, each item with a ``targetRef`` naming the destination and a
``default`` block), *what they receive from* (``from[]``, each with a ``targetRef``
naming the source) or *what all their inbound traffic gets* (``rules[]``, a ``default``
block with no source). Each policy module defines its ``default`` model and builds its
spec with ``To[Conf]``, ``From[Conf]`` and ``Rule[Conf]``.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gossamer.model.fields import SPEC_CONFIG, Name, Tags

C = TypeVar("C", bound=BaseModel)


class TargetKind(enum.StrEnum):
    MESH = "Mesh"
    MESH_SUBSET = "MeshSubset"
    MESH_SERVICE = "MeshService"
    MESH_SERVICE_SUBSET = "MeshServiceSubset"
    DATAPLANE = "Dataplane"
    # A destination only (``to[].targetRef``), in the kinds that support it
    # (``PolicySpec.EXTERNAL_DESTINATIONS``); ``gossamer.model.meshexternalservice``.
    MESH_EXTERNAL_SERVICE = "MeshExternalService"


# How specific a targetRef is: more specific wins when policies of one type overlap.
SPECIFICITY = {
    TargetKind.MESH: 0,
    TargetKind.MESH_SUBSET: 1,
    TargetKind.MESH_SERVICE: 2,
    TargetKind.MESH_SERVICE_SUBSET: 3,
    TargetKind.DATAPLANE: 4,
    TargetKind.MESH_EXTERNAL_SERVICE: 2,  # as a MeshService: one named destination
}

_NEEDS_NAME = {TargetKind.MESH_SERVICE, TargetKind.MESH_SERVICE_SUBSET, TargetKind.DATAPLANE,
               TargetKind.MESH_EXTERNAL_SERVICE}
_TAKES_TAGS = {TargetKind.MESH_SUBSET, TargetKind.MESH_SERVICE_SUBSET, TargetKind.DATAPLANE}


class TargetRef(BaseModel):
    """Selects proxies, destinations or sources.

    ``Mesh``: everything. ``MeshSubset``: proxies with all of ``tags``. ``MeshService``:
    the service ``name``. ``MeshServiceSubset``: the service ``name`` with ``tags``.
    ``Dataplane``: the one Dataplane ``name``. ``MeshExternalService``: the external
    service ``name``, as a destination only.
    """

    model_config = SPEC_CONFIG

    kind: TargetKind
    name: Name | None = None
    tags: Tags | None = None
    mesh: Name | None = None

    @model_validator(mode="after")
    def _shape(self) -> TargetRef:
        if self.kind in _NEEDS_NAME and not self.name:
            raise ValueError(f"targetRef of kind {self.kind.value} needs a name")
        if self.kind not in _NEEDS_NAME and self.name:
            raise ValueError(f"targetRef of kind {self.kind.value} takes no name")
        if self.kind not in _TAKES_TAGS and self.tags:
            raise ValueError(f"targetRef of kind {self.kind.value} takes no tags")
        if self.kind is TargetKind.MESH_SUBSET and self.tags is None:
            raise ValueError("targetRef of kind MeshSubset needs tags")
        return self

    @property
    def specificity(self) -> int:
        return SPECIFICITY[self.kind]


MESH_TARGET = TargetRef(kind=TargetKind.MESH)

_TO_KINDS = {TargetKind.MESH, TargetKind.MESH_SERVICE, TargetKind.MESH_EXTERNAL_SERVICE}
_FROM_KINDS = {TargetKind.MESH, TargetKind.MESH_SUBSET, TargetKind.MESH_SERVICE,
               TargetKind.MESH_SERVICE_SUBSET}


class To(BaseModel, Generic[C]):
    """Outbound: traffic from the selected proxies to ``targetRef``."""

    model_config = SPEC_CONFIG

    target_ref: TargetRef
    default: C

    @model_validator(mode="after")
    def _kinds(self) -> To[C]:
        if self.target_ref.kind not in _TO_KINDS:
            raise ValueError(f"to[].targetRef.kind must be one of "
                             f"{sorted(k.value for k in _TO_KINDS)}")
        return self


class From(BaseModel, Generic[C]):
    """Inbound: traffic to the selected proxies from sources matching ``targetRef``."""

    model_config = SPEC_CONFIG

    target_ref: TargetRef
    default: C

    @model_validator(mode="after")
    def _kinds(self) -> From[C]:
        if self.target_ref.kind not in _FROM_KINDS:
            raise ValueError(f"from[].targetRef.kind must be one of "
                             f"{sorted(k.value for k in _FROM_KINDS)}")
        return self


class Rule(BaseModel, Generic[C]):
    """Inbound: applies to all traffic the selected proxies receive."""

    model_config = SPEC_CONFIG

    default: C


MAX_ITEMS = 128


class PolicySpec(BaseModel):
    """Base of every policy spec; subclasses add ``to``/``from_``/``rules`` as they allow.

    Subclasses declare ``from_: list[From[Conf]] | None = Field(None, alias="from",
    max_length=MAX_ITEMS)`` since ``from`` is a Python keyword.
    """

    model_config = SPEC_CONFIG
    # Whether ``to[]`` may target a MeshExternalService: only the kinds whose conf the
    # external service's listener and cluster apply (``proxy.envoy.external``) say so;
    # the others refuse it rather than accept a policy that would do nothing.
    EXTERNAL_DESTINATIONS: ClassVar[bool] = False
    # Whether the top-level targetRef may name a MeshExternalService: only a kind the
    # zone egress enforces for it (MeshTrafficPermission, ``zone_egress.envoy``).
    EXTERNAL_TARGET: ClassVar[bool] = False

    target_ref: TargetRef = Field(default=MESH_TARGET)

    @field_validator("target_ref")
    @classmethod
    def _selects_proxies(cls, ref: TargetRef) -> TargetRef:
        if ref.kind is TargetKind.MESH_EXTERNAL_SERVICE and not cls.EXTERNAL_TARGET:
            raise ValueError("a MeshExternalService is a destination, not a proxy: name it "
                             "in to[].targetRef (only a MeshTrafficPermission, enforced at "
                             "the zone egress, may target one)")
        return ref

    @model_validator(mode="after")
    def _external_destinations(self) -> PolicySpec:
        if type(self).EXTERNAL_DESTINATIONS:
            return self
        for i, item in enumerate(getattr(self, "to", None) or ()):
            ref = getattr(item, "target_ref", None)
            if isinstance(ref, TargetRef) and ref.kind is TargetKind.MESH_EXTERNAL_SERVICE:
                raise ValidationError.from_exception_data("cross-field", [{
                    "type": PydanticCustomError(
                        "cross_field", "this policy kind cannot target a MeshExternalService "
                                       "(MeshTimeout, MeshRetry, MeshCircuitBreaker, "
                                       "MeshHealthCheck, MeshAccessLog, MeshHTTPRoute, "
                                       "MeshFaultInjection and MeshLoadBalancingStrategy "
                                       "can)"),
                    "loc": ("to", i, "targetRef", "kind"), "input": ref.kind.value}])
        return self

    @model_validator(mode="after")
    def _has_something(self) -> PolicySpec:
        sections = [getattr(self, s, None) for s in ("to", "from_", "rules")]
        if all(not s for s in sections):
            present = [name for name in ("to", "from", "rules")
                       if (name if name != "from" else "from_") in type(self).model_fields]
            raise ValueError(f"a policy needs at least one of {', '.join(present)}")
        return self
