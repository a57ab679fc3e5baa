"""What the GUI shows beyond the generic API, computed from stored resources alone.

Three questions an operator asks a browser, each a pure function of the Dataplanes and
policies a control plane holds (no I/O, no clock), so the global and a zone answer them
the same way from their own stores:

- ``matched_json``: which policies apply to one dataplane, per kind, and the merged conf
  they make (``gossamer.policy.match_policies``, the same matching the zone CP runs
  before it generates Envoy config);
- ``selected_dataplanes``: which dataplanes a policy's top-level ``targetRef`` selects;
- ``callers_json``: the MeshTrafficPermission decision for every caller service of one
  service, per instance, as the RBAC filter applies it (``proxy.envoy.rbac``: the first
  matching ``from[]`` rule, else ``rules[]``, else denied: the mesh is closed by default).

A dataplane's zone is its ``gossamer.io/zone`` label (synced from a zone) or the control
plane's own zone, so zone-origin policies apply only where they came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.labels import DISPLAY_NAME_LABEL, SERVICE_TAG, ZONE_LABEL
from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.policy import KindPolicies, MergedConf, ProxyView, match_policies
from gossamer.policy.merge import conf_data
from gossamer.policy.selectors import applies_in_zone, selects_proxy, top_target_ref

MTP = "MeshTrafficPermission"
NO_PERMISSION = "no MeshTrafficPermission allows it: the mesh denies by default"


def zone_of(dataplane: Resource, local_zone: str) -> str | None:
    """The zone a dataplane runs in: its synced label, else this control plane's zone."""
    return dataplane.labels.get(ZONE_LABEL) or local_zone or None


def as_named(dataplane: Resource) -> Resource:
    """The dataplane under the name its zone gave it: the global stores a zone's
    Dataplanes under zone-hashed names, with the original in ``gossamer.io/display-name``
    (``sync.applier``), and a ``Dataplane`` targetRef names the original."""
    display = dataplane.labels.get(DISPLAY_NAME_LABEL)
    return dataplane if display is None else replace(dataplane, name=display)


def merged_json(merged: MergedConf) -> dict[str, Any]:
    conf = merged.conf
    data: Any = ([conf_data(c) for c in conf] if isinstance(conf, tuple)
                 else conf_data(conf))
    return {"conf": data, "policies": [p.name for p in merged.policies],
            "problem": merged.problem}


def _kind_entries(kp: KindPolicies) -> list[dict[str, Any]]:
    """One row per place the kind configures: proxy, inbound (rules, each source), outbound."""
    rows: list[dict[str, Any]] = []
    if kp.proxy is not None:
        rows.append({"scope": "proxy", "target": "the whole proxy", **merged_json(kp.proxy)})
    for key, inbound in sorted(kp.inbounds.items(), key=lambda i: i[0].port):
        where = f"inbound :{key.port}"
        if inbound.rules is not None:
            rows.append({"scope": "inbound", "target": where, **merged_json(inbound.rules)})
        for rule in inbound.from_rules:
            source = ", ".join(f"{k}={v}" for k, v in rule.source.tags) or "any caller"
            rows.append({"scope": "from", "target": f"{where} from {source}",
                         **merged_json(rule.conf)})
    for service, conf in sorted(kp.outbounds.items()):
        rows.append({"scope": "outbound", "target": f"to {service}", **merged_json(conf)})
    if kp.outbound_default is not None:
        rows.append({"scope": "outbound", "target": "to any other destination",
                     **merged_json(kp.outbound_default)})
    return rows


def matched_json(dataplane: Resource, policies: Iterable[Resource], local_zone: str,
                 destinations: Iterable[str] = ()) -> dict[str, Any]:
    """Every kind that applies to ``dataplane``: where, the merged conf, and which policies
    made it (least specific first: the last one won any conflict)."""
    zone = zone_of(dataplane, local_zone)
    dataplane = as_named(dataplane)
    matched = match_policies(dataplane, policies, destinations=destinations, zone=zone)
    kinds = [{"kind": kind, "entries": _kind_entries(kp)}
             for kind, kp in sorted(matched.kinds.items())]
    return {"mesh": dataplane.mesh, "dataplane": dataplane.name, "zone": zone,
            "kinds": kinds}


def proxy_views(dataplanes: Iterable[Resource], local_zone: str) -> list[ProxyView]:
    """Each Dataplane as matching sees it, under its own name and zone: built once per
    request, then matched against every policy shown."""
    return [ProxyView.of(as_named(dp), zone_of(dp, local_zone)) for dp in dataplanes
            if isinstance(dp.spec, DataplaneSpec)]


def selected_dataplanes(policy: Resource, proxies: Iterable[ProxyView]) -> list[dict[str, Any]]:
    """The dataplanes (``proxy_views``) of the policy's mesh its top-level targetRef
    selects, by name."""
    ref = top_target_ref(policy)
    if ref is None:
        return []
    out = [{"name": view.name, "zone": view.zone} for view in proxies
           if view.mesh == policy.mesh and applies_in_zone(policy, view.zone)
           and selects_proxy(ref, view)]
    return sorted(out, key=lambda d: (d["name"], d["zone"] or ""))


def mesh_services(mesh: str, dataplanes: Iterable[Resource],
                  ingresses: Iterable[Resource]) -> list[str]:
    """Every service of ``mesh``: its dataplanes' inbounds and what ingresses offer."""
    names: set[str] = set()
    for dp in dataplanes:
        if dp.mesh == mesh and isinstance(dp.spec, DataplaneSpec):
            names.update(ib.service for ib in dp.spec.networking.inbound)
    for zi in ingresses:
        if isinstance(zi.spec, ZoneIngressSpec):
            names.update(a.tags.get(SERVICE_TAG, "") for a in zi.spec.available_services
                         if a.mesh == mesh)
    names.discard("")
    return sorted(names)


def _decision(kp: KindPolicies, port: int, caller: str) -> tuple[str, list[str]]:
    inbound = kp.inbound(port)
    merged = inbound.for_source({SERVICE_TAG: caller}) or inbound.rules
    if merged is None:
        return "Deny", []
    action = getattr(merged.conf, "action", None)
    return str(action) if action is not None else "Deny", [p.name for p in merged.policies]


def callers_json(mesh: str, service: str, dataplanes: Sequence[Resource],
                 policies: Sequence[Resource], callers: Sequence[str],
                 local_zone: str) -> dict[str, Any]:
    """Per caller service, the MeshTrafficPermission action each instance of ``service``
    applies to it (``Allow``, ``Deny``, ``AllowWithShadowDeny``) and the policies that
    decided; ``action`` is ``Mixed`` when instances disagree."""
    instances = []
    permissions = [p for p in policies if p.type == MTP]
    for dp in dataplanes:
        if dp.mesh != mesh or not isinstance(dp.spec, DataplaneSpec):
            continue
        ports = [ib.port for ib in dp.spec.networking.inbound if ib.service == service]
        if ports:
            zone, named = zone_of(dp, local_zone), as_named(dp)
            kp = match_policies(named, permissions, zone=zone).kind(MTP)
            instances.append((named.name, zone, kp, ports[0]))
    rows = []
    for caller in callers:
        per: list[dict[str, Any]] = [
            {"dataplane": name, "zone": zone, "action": action, "policies": refs}
            for name, zone, kp, port in instances
            for action, refs in [_decision(kp, port, caller)]]
        actions = {p["action"] for p in per}
        rows.append({"service": caller,
                     "action": actions.pop() if len(actions) == 1 else
                     ("Mixed" if actions else "Unknown"),
                     "policies": sorted({r for p in per for r in p["policies"]}),
                     "reason": NO_PERMISSION if per and not any(p["policies"] for p in per)
                     else "", "instances": per})
    return {"mesh": mesh, "service": service, "instances": len(instances), "callers": rows}
