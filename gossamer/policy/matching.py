"""Policy matching: which policies apply to one proxy, and its effective conf per kind.

``match_policies(dataplane, policies, destinations=..., zone=...)`` is pure: no I/O, no
clock. It works on any policy kind whose spec has a ``targetRef`` and some of:

- ``to[]`` items (``targetRef`` + ``default``; route kinds: ``targetRef`` + ``rules``)
  → one conf per destination service (``KindPolicies.outbounds``);
- ``rules[]`` items (``default``) → one conf per inbound (``InboundPolicies.rules``);
- ``from[]`` items (``targetRef`` + ``default``) → per inbound, first-match source rules
  (``InboundPolicies.from_rules``, see ``gossamer.policy.sources``);
- a top-level ``default`` (``MeshTrace``, ``MeshMetric``) → one proxy-wide conf
  (``KindPolicies.proxy``).

How it works: policies of other meshes, non-policies, and zone-origin policies of another
zone are dropped; the rest are sorted once by ``selectors.policy_order`` (less specific
top-level targetRef first, then global- before zone-origin, then name). For each
destination or inbound, the items that match it are sorted by their own targetRef
specificity, then by that policy order, then by position in the policy, and merged field
by field (``gossamer.policy.merge``): whatever sorts later wins. So an item aimed at
``MeshService: backend`` beats a ``Mesh`` item even when the latter sits in a policy with
a more specific top-level targetRef, as in Kuma.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from gossamer.model.base import Resource
from gossamer.model.policy import SPECIFICITY, TargetRef
from gossamer.policy.merge import Conf, MergedConf, PolicyRef, merge_confs
from gossamer.policy.selectors import (
    ALL_DESTINATIONS,
    InboundKey,
    ProxyInbound,
    ProxyView,
    applies_in_zone,
    destination_key,
    policy_order,
    selects_inbound,
    selects_proxy,
    source_tags,
    top_target_ref,
)
from gossamer.policy.sources import FromItem, FromRule, build_from_rules, first_match


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class InboundPolicies:
    """What one policy kind configures on one inbound.

    ``rules``: the merged ``rules[]`` defaults, for all traffic to the inbound.
    ``from_rules``: per-source confs from ``from[]``, most specific first; the first rule
    whose ``source`` matches a caller's tags is that caller's conf (``for_source``), and a
    caller matching none gets no conf from this kind.
    """

    key: InboundKey
    rules: MergedConf | None = None
    from_rules: tuple[FromRule, ...] = ()

    def for_source(self, source_tags: Mapping[str, str]) -> MergedConf | None:
        return first_match(self.from_rules, source_tags)


@dataclass(frozen=True)
class KindPolicies:
    """The effective conf of one policy kind (``kind``, e.g. ``MeshTimeout``) on a proxy.

    ``proxy``: the proxy-wide conf of default-only kinds. ``inbounds``: per inbound that
    some policy configures. ``outbounds``: per destination service, for every destination
    the caller named and every service a matching ``to[]`` item names.
    ``outbound_default``: what any other destination gets (the merged ``Mesh`` items).
    ``scope``: when matched with ``only_destinations``, the destinations ``outbounds`` is
    complete for; None when it holds every service a ``to[]`` item names.
    Use ``inbound()`` and ``outbound()`` rather than the maps: they fill in the defaults.
    """

    kind: str
    proxy: MergedConf | None = None
    inbounds: Mapping[InboundKey, InboundPolicies] = field(default_factory=_empty)
    outbounds: Mapping[str, MergedConf] = field(default_factory=_empty)
    outbound_default: MergedConf | None = None
    scope: frozenset[str] | None = None

    def inbound(self, port: int, address: str | None = None) -> InboundPolicies:
        key = InboundKey(port, address)
        found = self.inbounds.get(key)
        if found is None and address is None:
            same_port = [v for k, v in self.inbounds.items() if k.port == port]
            found = same_port[0] if len(same_port) == 1 else None
        return found if found is not None else InboundPolicies(key)

    def outbound(self, service: str) -> MergedConf | None:
        if self.scope is not None and service not in self.scope:
            # The default would be a wrong answer for a service some to[] item names.
            raise KeyError(f"{self.kind} was matched for {len(self.scope)} destinations, "
                           f"not for {service!r}")
        return self.outbounds.get(service, self.outbound_default)

    @property
    def empty(self) -> bool:
        return (self.proxy is None and not self.inbounds and not self.outbounds
                and self.outbound_default is None)


@dataclass(frozen=True)
class ProxyPolicies:
    """Everything that applies to one proxy: ``kinds`` maps a kind name to its confs
    (only kinds with something applying); ``kind()`` returns an empty one otherwise.
    ``scope``: the destinations matched, as in ``KindPolicies``."""

    dataplane: str
    mesh: str
    kinds: Mapping[str, KindPolicies] = field(default_factory=_empty)
    scope: frozenset[str] | None = None

    def kind(self, name: str) -> KindPolicies:
        return self.kinds.get(name) or KindPolicies(name, scope=self.scope)


@dataclass(frozen=True)
class _Ordered:
    """One sorted policy: ``index`` is its place in the global policy order."""

    index: int
    ref: PolicyRef
    target: TargetRef
    spec: Any


@dataclass(frozen=True)
class _ToItem:
    order: tuple[int, int, int]
    policy: PolicyRef
    conf: Conf


def match_policies(dataplane: Resource, policies: Iterable[Resource], *,
                   destinations: Iterable[str] = (), zone: str | None = None,
                   only_destinations: bool = False, presorted: bool = False) -> ProxyPolicies:
    """The effective conf of every policy kind for the proxy ``dataplane``.

    ``policies`` may mix kinds and include non-policies (ignored). ``destinations`` are
    the services the proxy may call; the Dataplane's explicit outbounds are added. ``zone``
    is the zone the proxy runs in, if known (see ``selectors``). With
    ``only_destinations``, outbound confs are merged for those services alone rather than
    also for every other service a ``to[]`` item names (in a big mesh, most of the work),
    and ``outbound()`` raises ``KeyError`` for any other service. ``presorted`` says the
    policies already come in ``policy_order`` (a caller matching many proxies against one
    mesh sorts once, not once per proxy).
    """
    proxy = ProxyView.of(dataplane, zone)
    services = sorted({*destinations, *proxy.outbound_services} - {ALL_DESTINATIONS})
    scope = frozenset(services) if only_destinations else None
    applicable = [p for p in policies if _applies(p, proxy)]
    if not presorted:
        applicable.sort(key=policy_order)
    by_kind: dict[str, list[_Ordered]] = defaultdict(list)
    for index, policy in enumerate(applicable):
        target = top_target_ref(policy)
        assert target is not None  # _applies checked it
        by_kind[policy.type].append(
            _Ordered(index, PolicyRef(policy.type, policy.name), target, policy.spec))
    kinds = {kind: _match_kind(kind, proxy, ordered, services, scope)
             for kind, ordered in sorted(by_kind.items())}
    return ProxyPolicies(dataplane=proxy.name, mesh=proxy.mesh, kinds=MappingProxyType(
        {kind: conf for kind, conf in kinds.items() if not conf.empty}), scope=scope)


def _applies(policy: Resource, proxy: ProxyView) -> bool:
    return (top_target_ref(policy) is not None and policy.mesh == proxy.mesh
            and applies_in_zone(policy, proxy.zone))


def _match_kind(kind: str, proxy: ProxyView, ordered: Sequence[_Ordered],
                services: Sequence[str], scope: frozenset[str] | None) -> KindPolicies:
    selected = [p for p in ordered if selects_proxy(p.target, proxy)]
    defaults = [(p.ref, d) for p in selected
                if isinstance(d := getattr(p.spec, "default", None), BaseModel)]
    outbounds, outbound_default = _outbounds(proxy, selected, services, scope)
    inbounds = {}
    for inbound in proxy.inbounds:
        conf = _inbound(proxy, inbound, ordered)
        if conf.rules is not None or conf.from_rules:
            inbounds[inbound.key] = conf
    return KindPolicies(kind=kind, proxy=merge_confs(defaults) if defaults else None,
                        inbounds=MappingProxyType(inbounds),
                        outbounds=MappingProxyType(outbounds),
                        outbound_default=outbound_default, scope=scope)


def _item_conf(item: Any) -> Conf | None:
    """A ``default`` conf, or a route kind's ``rules`` as a tuple; None if neither."""
    default = getattr(item, "default", None)
    if isinstance(default, BaseModel):
        return default
    rules = getattr(item, "rules", None)
    if isinstance(rules, list | tuple) and all(isinstance(r, BaseModel) for r in rules):
        return tuple(rules)
    return None


def _items(spec: Any, section: str) -> list[Any]:
    return list(getattr(spec, section, None) or [])


def _outbounds(proxy: ProxyView, selected: Sequence[_Ordered], services: Sequence[str],
               scope: frozenset[str] | None
               ) -> tuple[dict[str, MergedConf], MergedConf | None]:
    everywhere: list[_ToItem] = []
    named: dict[str, list[_ToItem]] = defaultdict(list)
    for p in selected:
        for i, item in enumerate(_items(p.spec, "to")):
            key = destination_key(item.target_ref, proxy.mesh)
            if key is None or (scope is not None and key != ALL_DESTINATIONS
                               and key not in scope):
                continue
            conf = _item_conf(item)
            if conf is None:
                continue
            to_item = _ToItem((SPECIFICITY[item.target_ref.kind], p.index, i), p.ref, conf)
            (everywhere if key == ALL_DESTINATIONS else named[key]).append(to_item)
    shared = _merge_to(everywhere) if everywhere else None
    result = {}
    for service in sorted({*services, *named}):
        own = named.get(service)
        merged = _merge_to(everywhere + own) if own else shared
        if merged is not None:
            result[service] = merged
    return result, shared


def _merge_to(items: list[_ToItem]) -> MergedConf:
    return merge_confs([(it.policy, it.conf) for it in sorted(items, key=lambda t: t.order)])


def _inbound(proxy: ProxyView, inbound: ProxyInbound,
             ordered: Sequence[_Ordered]) -> InboundPolicies:
    rules: list[tuple[PolicyRef, Conf]] = []
    from_items: list[FromItem] = []
    for p in ordered:  # already in policy order, so rules[] needs no sort
        if not selects_inbound(p.target, proxy, inbound):
            continue
        rules += [(p.ref, d) for r in _items(p.spec, "rules")
                  if isinstance(d := getattr(r, "default", None), BaseModel)]
        for i, item in enumerate(_items(p.spec, "from_")):
            tags = source_tags(item.target_ref, proxy.mesh)
            conf = _item_conf(item)
            if tags is not None and conf is not None:
                order = (SPECIFICITY[item.target_ref.kind], p.index, i)
                from_items.append(FromItem(tags, order, p.ref, conf))
    return InboundPolicies(key=inbound.key, rules=merge_confs(rules) if rules else None,
                           from_rules=build_from_rules(from_items))
