"""MeshLoadBalancingStrategy: how a proxy picks an endpoint of a destination.

``loadBalancer`` becomes the cluster's ``lb_policy`` (and, for RingHash and Maglev, the
route's ``hash_policy``); ``localityAwareness`` becomes endpoint priorities and weights:
endpoints sharing the proxy's zone and affinity tags first, then other zones in the
order ``crossZone.failover`` lists them, spilling over below ``failoverThreshold``.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field, StrictBool, StrictInt, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Duration, Name, Percentage
from gossamer.model.policy import MAX_ITEMS, PolicySpec, To
from gossamer.model.policy_fields import HeaderName, TagKey, Token, UrlPath, fail_at

MAX_RING_SIZE = 8_388_608  # Envoy's ceiling for ring_hash_lb_config
MAX_ZONES = 64


class LoadBalancerType(enum.StrEnum):
    ROUND_ROBIN = "RoundRobin"
    LEAST_REQUEST = "LeastRequest"
    RANDOM = "Random"
    RING_HASH = "RingHash"
    MAGLEV = "Maglev"


class HashFunction(enum.StrEnum):
    XX_HASH = "XXHash"
    MURMUR_HASH_2 = "MurmurHash2"


class HashPolicyType(enum.StrEnum):
    HEADER = "Header"
    COOKIE = "Cookie"
    SOURCE_IP = "SourceIP"
    QUERY_PARAMETER = "QueryParameter"
    FILTER_STATE = "FilterState"


class NamedKey(BaseModel):
    model_config = SPEC_CONFIG

    name: Token


class HeaderKey(BaseModel):
    model_config = SPEC_CONFIG

    name: HeaderName


class CookieKey(BaseModel):
    model_config = SPEC_CONFIG

    name: Token
    ttl: Duration | None = None
    path: UrlPath | None = None


class FilterStateKey(BaseModel):
    model_config = SPEC_CONFIG

    key: Token


# Which section each hash policy type reads; SourceIP needs none.
_HASH_SECTIONS = {HashPolicyType.HEADER: "header", HashPolicyType.COOKIE: "cookie",
                  HashPolicyType.QUERY_PARAMETER: "queryParameter",
                  HashPolicyType.FILTER_STATE: "filterState"}


class HashPolicy(BaseModel):
    model_config = SPEC_CONFIG

    type: HashPolicyType
    terminal: StrictBool | None = None
    header: HeaderKey | None = None
    cookie: CookieKey | None = None
    query_parameter: NamedKey | None = None
    filter_state: FilterStateKey | None = None

    @model_validator(mode="after")
    def _section(self) -> HashPolicy:
        wanted = _HASH_SECTIONS.get(self.type)
        given = self.model_dump(by_alias=True, exclude_none=True)
        for section in _HASH_SECTIONS.values():
            if section in given and section != wanted:
                fail_at(section, f"a hash policy of type {self.type.value} takes no {section}")
        if wanted and wanted not in given:
            fail_at(wanted, f"a hash policy of type {self.type.value} needs {wanted}")
        return self


class LeastRequest(BaseModel):
    model_config = SPEC_CONFIG

    choice_count: StrictInt | None = Field(None, ge=2, le=100)


class RingHash(BaseModel):
    model_config = SPEC_CONFIG

    hash_function: HashFunction | None = None
    min_ring_size: StrictInt | None = Field(None, ge=1, le=MAX_RING_SIZE)
    max_ring_size: StrictInt | None = Field(None, ge=1, le=MAX_RING_SIZE)
    hash_policies: list[HashPolicy] | None = Field(None, max_length=16)

    @model_validator(mode="after")
    def _sizes(self) -> RingHash:
        if self.min_ring_size and self.max_ring_size and self.min_ring_size > self.max_ring_size:
            fail_at("minRingSize", "must not be larger than maxRingSize", self.min_ring_size)
        return self


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


class Maglev(BaseModel):
    model_config = SPEC_CONFIG

    table_size: StrictInt | None = Field(None, ge=1, le=5_000_011)
    hash_policies: list[HashPolicy] | None = Field(None, max_length=16)

    @model_validator(mode="after")
    def _prime(self) -> Maglev:
        size = self.table_size
        if size is not None and not _is_prime(size):
            fail_at("tableSize", "must be a prime number (Envoy's default is 65537)", size)
        return self


class LoadBalancer(BaseModel):
    model_config = SPEC_CONFIG

    type: LoadBalancerType
    least_request: LeastRequest | None = None
    ring_hash: RingHash | None = None
    maglev: Maglev | None = None

    @model_validator(mode="after")
    def _section(self) -> LoadBalancer:
        sections = {"leastRequest": (self.least_request, LoadBalancerType.LEAST_REQUEST),
                    "ringHash": (self.ring_hash, LoadBalancerType.RING_HASH),
                    "maglev": (self.maglev, LoadBalancerType.MAGLEV)}
        for section, (value, lb_type) in sections.items():
            if value is not None and self.type is not lb_type:
                fail_at(section, f"a load balancer of type {self.type.value} takes no {section}")
        return self


class AffinityTag(BaseModel):
    model_config = SPEC_CONFIG

    key: TagKey
    weight: StrictInt | None = Field(None, ge=1, le=1_000_000)


class LocalZone(BaseModel):
    model_config = SPEC_CONFIG

    affinity_tags: list[AffinityTag] | None = Field(None, max_length=16)

    @model_validator(mode="after")
    def _weights(self) -> LocalZone:
        # Without weights the order sets them (9:1 per step); mixing the two is ambiguous.
        weighted = [t.weight is not None for t in self.affinity_tags or []]
        if any(weighted) and not all(weighted):
            fail_at("affinityTags", "give a weight to every affinity tag or to none")
        return self


class FailoverFrom(BaseModel):
    model_config = SPEC_CONFIG

    zones: list[Name] = Field(min_length=1, max_length=MAX_ZONES)


class FailoverToType(enum.StrEnum):
    ANY = "Any"
    ONLY = "Only"
    ANY_EXCEPT = "AnyExcept"
    NONE = "None"


class FailoverTo(BaseModel):
    model_config = SPEC_CONFIG

    type: FailoverToType
    zones: list[Name] | None = Field(None, max_length=MAX_ZONES)

    @model_validator(mode="after")
    def _zones(self) -> FailoverTo:
        needs = self.type in (FailoverToType.ONLY, FailoverToType.ANY_EXCEPT)
        if needs and not self.zones:
            fail_at("zones", f"failover to {self.type.value} needs zones")
        if not needs and self.zones is not None:
            fail_at("zones", f"failover to {self.type.value} takes no zones")
        return self


class Failover(BaseModel):
    model_config = SPEC_CONFIG

    from_: FailoverFrom | None = Field(None, alias="from")
    to: FailoverTo


class FailoverThreshold(BaseModel):
    model_config = SPEC_CONFIG

    percentage: Percentage


class CrossZone(BaseModel):
    model_config = SPEC_CONFIG

    failover: list[Failover] | None = Field(None, max_length=32)
    failover_threshold: FailoverThreshold | None = None


class LocalityAwareness(BaseModel):
    model_config = SPEC_CONFIG

    disabled: StrictBool | None = None
    local_zone: LocalZone | None = None
    cross_zone: CrossZone | None = None


class MeshLoadBalancingStrategyConf(BaseModel):
    model_config = SPEC_CONFIG

    load_balancer: LoadBalancer | None = None
    locality_awareness: LocalityAwareness | None = None

    @model_validator(mode="after")
    def _something(self) -> MeshLoadBalancingStrategyConf:
        if self.load_balancer is None and self.locality_awareness is None:
            raise ValueError("default needs loadBalancer or localityAwareness")
        return self


class MeshLoadBalancingStrategySpec(PolicySpec):
    EXTERNAL_DESTINATIONS = True  # proxy.envoy.external applies its loadBalancer

    to: list[To[MeshLoadBalancingStrategyConf]] | None = Field(None, max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshLoadBalancingStrategy",
    spec_model=MeshLoadBalancingStrategySpec,
    scope=Scope.MESH,
    path="meshloadbalancingstrategies",
    noun="meshloadbalancingstrategy",
    alias="mlbs",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="load balancing algorithm, zone affinity and cross-zone failover",
)
