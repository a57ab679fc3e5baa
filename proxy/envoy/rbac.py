"""MeshTrafficPermission → Envoy RBAC: who may open connections to an inbound.

Uses the ``envoy.filters.network.rbac`` filter on TCP inbounds and
``envoy.filters.http.rbac`` on HTTP inbounds (a denied request gets 403; a denied TCP
connection is closed).

How: the inbound's ``from[]`` rules (``InboundPolicies.from_rules``) are first-match, most
specific first; ``rules[]``, if any, act as a last rule for every source. A source is
allowed when its first matching rule allows. Envoy has no first-match engine, so the
allowed set is written as one ALLOW-action RBAC: for each allowing rule i, "matches
rule i and no *denying* rule before i" (an earlier allowing rule would allow anyway, so
only earlier denials need excluding). ``AllowWithShadowDeny`` allows, and the same
construction with those rules counted as denials becomes ``shadow_rules``: Envoy
evaluates and counts it (``shadow_denied`` stats, dynamic metadata) but does not enforce it.

Sources are known by their certificate: a selector's ``gossamer.io/service`` tag becomes
an authenticated-principal match on the URI SAN ``spiffe://<mesh>/<service>``, each other
tag on ``gossamer://<key>/<value>`` (``tag_uri``); the workload certificate carries one
URI per inbound tag, and Envoy matches a principal against every URI SAN. A selector
with no tags (``Mesh``) matches any peer, including plaintext ones a permissive inbound
accepts.

No MeshTrafficPermission for an inbound means no rule allows anything: the RBAC filter is
still installed, with no policies, and denies every connection. The mesh is closed by
default; an operator opens it with a ``Mesh``-wide Allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from gossamer.model.dataplane import Inbound
from gossamer.model.labels import SERVICE_TAG
from gossamer.model.meshtrafficpermission import Action, MeshTrafficPermissionConf
from gossamer.policy import ProxyPolicies
from gossamer.policy.selectors import TagSet
from proxy.context import spiffe, tag_uri
from proxy.envoy.confs import TRAFFIC_PERMISSION
from proxy.envoy.protos import exact

NETWORK_FILTER = "envoy.filters.network.rbac"
HTTP_FILTER = "envoy.filters.http.rbac"


@dataclass(frozen=True)
class SourceRule:
    """Sources carrying ``tags`` get ``action`` (unless an earlier rule matched them)."""

    tags: TagSet
    action: Action
    name: str


@dataclass(frozen=True)
class Permissions:
    """The RBAC of one inbound: enforced ``rules`` and, if any, ``shadow`` rules."""

    rules: rbac_pb2.RBAC
    shadow: rbac_pb2.RBAC | None


def source_rules(policies: ProxyPolicies, ib: Inbound) -> tuple[SourceRule, ...]:
    """The inbound's permission rules in first-match order."""
    conf = policies.kind(TRAFFIC_PERMISSION).inbound(ib.port, ib.address)
    out = []
    for rule in conf.from_rules:
        if isinstance(rule.conf.conf, MeshTrafficPermissionConf):
            names = ",".join(p.name for p in rule.conf.policies)
            out.append(SourceRule(rule.source.tags, rule.conf.conf.action, names))
    if conf.rules is not None and isinstance(conf.rules.conf, MeshTrafficPermissionConf):
        names = ",".join(p.name for p in conf.rules.policies)
        out.append(SourceRule((), conf.rules.conf.action, names))
    return tuple(out)


def principal(mesh: str, tags: TagSet) -> rbac_pb2.Principal:
    """Peers whose certificate carries every tag of ``tags`` (any peer for none)."""
    ids = [rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated(
        principal_name=exact(spiffe(mesh, value) if key == SERVICE_TAG else tag_uri(key, value))))
        for key, value in tags]
    if not ids:
        return rbac_pb2.Principal(any=True)
    if len(ids) == 1:
        return ids[0]
    return rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=ids))


def _allowed(mesh: str, rules: Sequence[SourceRule], denying: frozenset[Action]) -> rbac_pb2.RBAC:
    policies: dict[str, rbac_pb2.Policy] = {}
    for i, rule in enumerate(rules):
        if rule.action in denying:
            continue
        earlier = [principal(mesh, r.tags) for r in rules[:i] if r.action in denying]
        who = principal(mesh, rule.tags)
        if earlier:
            excluded = (earlier[0] if len(earlier) == 1
                        else rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=earlier)))
            parts = list(who.and_ids.ids) if who.HasField("and_ids") else [who]
            who = rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(
                ids=[*parts, rbac_pb2.Principal(not_id=excluded)]))
        policies[f"{i}:{rule.name}"] = rbac_pb2.Policy(
            permissions=[rbac_pb2.Permission(any=True)], principals=[who])
    return rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW, policies=policies)


def permissions(mesh: str, rules: Sequence[SourceRule]) -> Permissions:
    enforced = _allowed(mesh, rules, frozenset({Action.DENY}))
    shadowed = any(r.action is Action.ALLOW_WITH_SHADOW_DENY for r in rules)
    shadow = (_allowed(mesh, rules, frozenset({Action.DENY, Action.ALLOW_WITH_SHADOW_DENY}))
              if shadowed else None)
    return Permissions(enforced, shadow)


def network_filter(perms: Permissions, stat_prefix: str) -> network_rbac_pb2.RBAC:
    out = network_rbac_pb2.RBAC(rules=perms.rules, stat_prefix=f"{stat_prefix}.")
    if perms.shadow is not None:
        out.shadow_rules.CopyFrom(perms.shadow)
        out.shadow_rules_stat_prefix = "shadow_"
    return out


def http_filter(perms: Permissions) -> http_rbac_pb2.RBAC:
    out = http_rbac_pb2.RBAC(rules=perms.rules)
    if perms.shadow is not None:
        out.shadow_rules.CopyFrom(perms.shadow)
        out.shadow_rules_stat_prefix = "shadow_"
    return out
