"""``cli.check_rules``: each rule from facts to lines, the thresholds at their edges, and
the invariant that any JSON whatever yields results, never an exception (Hypothesis)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cli.check import render
from cli.check_rules import (
    MAX_SKEW,
    Result,
    clock_skew,
    egress_checks,
    ingress_checks,
    intermediate_checks,
    judge,
    proxy_checks,
    zone_online,
    zone_token,
)
from gossamer.model.registry import parse_document
from sync.outcomes import Outcome, Tally
from zone_cp.ingress_probe import targets

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def zone(name: str = "west", **report: Any) -> dict[str, Any]:
    base = {"reportedAt": NOW.isoformat(), "tokenId": "t1",
            "tokenExpiresAt": int((NOW + dt.timedelta(days=30)).timestamp()),
            "ingresses": [], "online": 2, "nacking": [], "certificates": [], "noVipPath": []}
    return {"name": name, "enabled": True, "online": True, "lastError": "",
            "report": {**base, **report}, "receivedAt": NOW.isoformat(), "tokenRevoked": False}


def test_skew_within_the_bound_passes_and_beyond_it_fails_with_ntp_as_the_fix() -> None:
    inside = zone(reportedAt=(NOW + MAX_SKEW).isoformat())
    outside = zone(reportedAt=(NOW - MAX_SKEW - dt.timedelta(seconds=1)).isoformat())
    ok, bad = clock_skew(inside), clock_skew(outside)
    assert ok is not None and ok.ok and "ahead of" in ok.detail
    assert bad is not None and not bad.ok and "31.0s behind" in bad.detail
    assert "NTP" in bad.fix
    assert clock_skew({**zone(), "receivedAt": None}) is None  # not measurable at a zone


def test_a_zone_token_is_judged_by_revocation_then_expiry() -> None:
    soon = int((NOW + dt.timedelta(days=2)).timestamp())
    past = int((NOW - dt.timedelta(hours=3)).timestamp())
    assert zone_token(zone(), NOW).ok
    assert "expires in 2d" in zone_token(zone(tokenExpiresAt=soon), NOW).detail
    assert not zone_token(zone(tokenExpiresAt=soon), NOW).ok
    assert "expired 3h ago" in zone_token(zone(tokenExpiresAt=past), NOW).detail
    revoked = zone_token({**zone(), "tokenRevoked": True}, NOW)
    assert not revoked.ok and "t1 is revoked" in revoked.detail
    assert "gossamer token zone --zone west" in revoked.fix


def test_an_offline_zone_names_why_and_the_fix_depends_on_it() -> None:
    revoked = zone_online({**zone(), "online": False, "lastError": "revoked: token t1"})
    assert not revoked.ok and "gossamer token zone" in revoked.fix
    gone = zone_online({**zone(), "online": False, "lastError": ""})
    assert "no stream from it" in gone.detail and "gossamer zone run" in gone.fix
    disabled = zone_online({**zone(), "enabled": False})
    assert not disabled.ok and "enabled: true" in disabled.fix


def test_ingresses_one_line_per_probe_and_a_zone_without_one() -> None:
    probe = {"zone": "east", "name": "i", "address": "10.0.0.2", "port": 10001,
             "reachable": False, "error": "connection refused"}
    facts = {"zones": [zone("west", ingresses=[probe]), zone("east")],
             "ingresses": [{"zone": "east", "name": "i", "address": "10.0.0.2", "port": 1}]}
    lines = list(ingress_checks(facts))
    assert [r.name for r in lines] == ["zone west ingress", "ingress of east from west"]
    assert not any(r.ok for r in lines)
    assert "cannot connect to 10.0.0.2:10001: connection refused" in lines[1].detail


def test_a_zone_without_an_egress_for_a_mesh_routed_through_one() -> None:
    facts = {"zones": [zone("west"), zone("east")], "egressMeshes": ["default"],
             "egresses": [{"zone": "west", "meshes": ["default"]},
                          {"zone": "east", "meshes": ["other"]}]}
    lines = list(egress_checks(facts))
    assert [(r.name, r.ok) for r in lines] == [("zone east egress for mesh default", False)]
    assert "gossamer egress run --mesh default" in lines[0].fix
    assert list(egress_checks({**facts, "egressMeshes": []})) == []


def test_proxy_problems_carry_their_hint_as_the_fix() -> None:
    nack = {"mesh": "default", "name": "web-1", "detail": "Envoy refused its Listener: x",
            "hint": "route the VIP range"}
    lines = list(proxy_checks({"zones": [zone(nacking=[nack])]}))
    assert lines[0] == Result("proxy NACKing its config: west/default/web-1", False,
                              "Envoy refused its Listener: x", "route the VIP range")
    assert [r.name for r in lines[1:]] == ["no workload certificate near expiry",
                                           "every sidecar reaches .mesh VIPs"]


def test_an_intermediate_with_less_than_a_quarter_left_fails() -> None:
    def item(hours_left: float) -> dict[str, Any]:
        return {"zone": "west", "mesh": "default",
                "notBefore": (NOW - dt.timedelta(hours=24 - hours_left)).isoformat(),
                "notAfter": (NOW + dt.timedelta(hours=hours_left)).isoformat()}

    assert [r.ok for r in intermediate_checks({"intermediates": [item(7)]}, NOW)] == [True]
    bad = list(intermediate_checks({"intermediates": [item(5)]}, NOW))
    assert not bad[0].ok and "expires in 5h" in bad[0].detail


def test_a_healthy_federation_passes_and_renders_a_summary() -> None:
    results = judge({"mode": "global", "zones": [zone()], "ingresses": [],
                     "caBackends": [{"mesh": "default", "backend": "ca-1", "type": "builtin",
                                     "ok": True}]}, NOW)
    assert results and all(r.ok for r in results), results
    assert render(results).endswith(f"all {len(results)} checks passed")


def test_a_standalone_zone_has_no_online_or_token_lines() -> None:
    names = [r.name for r in judge({"mode": "standalone", "zones": [
        {**zone("lab"), "receivedAt": None}]}, NOW)]
    assert not any(n.startswith("zone lab") for n in names), names


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=10)
KEYS = st.sampled_from(["mode", "zones", "ingresses", "caBackends", "issuance",
                        "intermediates", "report", "name", "online", "reportedAt",
                        "receivedAt", "tokenExpiresAt", "nacking", "notBefore", "notAfter"])


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(KEYS, JSON | st.lists(st.dictionaries(KEYS, JSON)), max_size=8))
def test_any_facts_yield_results_never_an_exception(facts: dict[str, Any]) -> None:
    for result in judge(facts, NOW):
        assert isinstance(result, Result) and isinstance(result.detail, str)


def test_tally_nacking_is_the_latest_answer_per_type() -> None:
    tally = Tally()
    tally.nack("lds", "cannot bind")
    tally.add("cds", Outcome.ACKED)
    assert tally.nacking == {"lds"}
    tally.add("lds", Outcome.ACKED)
    assert tally.nacking == set() and tally.last_nack == "cannot bind"


def test_probe_targets_are_other_zones_ingresses_at_their_advertised_address() -> None:
    def zi(name: str, zone_label: str | None, advertised: bool) -> Any:
        net: dict[str, Any] = {"address": "10.0.0.1", "port": 10001}
        if advertised:
            net.update(advertisedAddress="203.0.113.9", advertisedPort=443)
        doc: dict[str, Any] = {"type": "ZoneIngress", "name": name, "networking": net}
        if zone_label:
            doc["labels"] = {"gossamer.io/zone": zone_label}
        return parse_document(doc)

    found = targets([zi("own", None, False), zi("e", "east", True), zi("n", "north", False)],
                    "west")
    assert [(t.zone, t.address, t.port) for t in found] == [
        ("east", "203.0.113.9", 443), ("north", "10.0.0.1", 10001)]
