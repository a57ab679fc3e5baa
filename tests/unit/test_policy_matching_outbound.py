"""Policy matching (gossamer.policy): table-driven cases of outbound confs (which policies
apply to which destinations, zone-origin policies, MeshSubset, defaults and contributors).
"""

from __future__ import annotations

from typing import Any

import pytest

from gossamer.model.base import Resource
from gossamer.model.meshtimeout import MeshTimeoutConf
from gossamer.policy import KindPolicies, PolicyRef, match_policies
from gossamer.policy.merge import conf_data
from tests.unit.policy_matching_kinds import MESH, SVC, dataplane, outbound, policy, svc, to_

OUTBOUND_CASES = [
    pytest.param([policy("all", MESH, to=[to_(MESH, idleTimeout="10s")])],
                 {"idleTimeout": "10s"}, id="mesh-applies-to-all"),
    pytest.param([policy("all", MESH, to=[to_(MESH, idleTimeout="10s", connectionTimeout="1s")]),
                  policy("web", svc("web"), to=[to_(MESH, idleTimeout="20s")])],
                 {"idleTimeout": "20s", "connectionTimeout": "1s"},
                 id="meshservice-beats-mesh-field-by-field"),
    pytest.param([policy("z-web", svc("web"), to=[to_(MESH, idleTimeout="20s")]),
                  policy("a-dp", {"kind": "Dataplane", "name": "web-1"},
                         to=[to_(MESH, idleTimeout="30s")])],
                 {"idleTimeout": "30s"}, id="dataplane-beats-meshservice"),
    pytest.param([policy("v1", {"kind": "MeshSubset", "tags": {"version": "v1"}},
                         to=[to_(MESH, idleTimeout="11s")]),
                  policy("v2", {"kind": "MeshSubset", "tags": {"version": "v2"}},
                         to=[to_(MESH, connectionTimeout="12s")])],
                 {"idleTimeout": "11s"}, id="meshsubset-needs-all-tags"),
    pytest.param([policy("sub", {"kind": "MeshServiceSubset", "name": "web",
                                 "tags": {"version": "v1"}}, to=[to_(MESH, idleTimeout="1s")]),
                  policy("svc", svc("web"), to=[to_(MESH, idleTimeout="2s")])],
                 {"idleTimeout": "1s"}, id="meshservicesubset-beats-meshservice"),
    pytest.param([policy("other", svc("payments"), to=[to_(MESH, idleTimeout="99s")])],
                 {}, id="policy-for-another-service-does-not-apply"),
    pytest.param([policy("other-dp", {"kind": "Dataplane", "name": "web-2"},
                         to=[to_(MESH, idleTimeout="99s")])],
                 {}, id="policy-for-another-dataplane-does-not-apply"),
    pytest.param([policy("dp-v2", {"kind": "Dataplane", "name": "web-1", "tags": {"version": "v2"}},
                         to=[to_(MESH, idleTimeout="99s")])],
                 {}, id="dataplane-tags-must-match-an-inbound"),
    pytest.param([policy("all", MESH, to=[to_(svc("backend"), idleTimeout="5s"),
                                          to_(MESH, idleTimeout="1s", connectionTimeout="2s")])],
                 {"idleTimeout": "5s", "connectionTimeout": "2s"},
                 id="to-meshservice-beats-to-mesh-within-a-policy"),
    pytest.param([policy("all", MESH, to=[to_(svc("backend"), idleTimeout="5s")]),
                  policy("web", svc("web"), to=[to_(MESH, idleTimeout="1s")])],
                 {"idleTimeout": "5s"}, id="to-specificity-comes-before-top-specificity"),
    pytest.param([policy("all", MESH, to=[to_(MESH, http={"requestTimeout": "1s",
                                                          "streamIdleTimeout": "2s"})]),
                  policy("web", svc("web"), to=[to_(svc("backend"),
                                                    http={"requestTimeout": "9s"})])],
                 {"http": {"requestTimeout": "9s", "streamIdleTimeout": "2s"}},
                 id="nested-models-merge-recursively"),
    pytest.param([policy("all", MESH, to=[to_(MESH, idleTimeout="1s")]),
                  policy("web", svc("web"), to=[to_(MESH, idleTimeout=None,
                                                    connectionTimeout="3s")])],
                 {"idleTimeout": "1s", "connectionTimeout": "3s"},
                 id="null-and-unset-inherit"),
    pytest.param([policy("a", svc("web"), origin="zone", to=[to_(MESH, idleTimeout="1s")]),
                  policy("z", svc("web"), origin="global", to=[to_(MESH, idleTimeout="2s")])],
                 {"idleTimeout": "1s"}, id="zone-origin-beats-global-despite-name"),
    pytest.param([policy("a", svc("web"), to=[to_(MESH, idleTimeout="1s")]),
                  policy("z", svc("web"), origin="global", to=[to_(MESH, idleTimeout="2s")])],
                 {"idleTimeout": "1s"}, id="unlabelled-counts-as-local"),
    pytest.param([policy("b", svc("web"), to=[to_(MESH, idleTimeout="2s")]),
                  policy("a", svc("web"), to=[to_(MESH, idleTimeout="1s")])],
                 {"idleTimeout": "2s"}, id="later-name-wins-a-tie"),
    pytest.param([policy("dp", {"kind": "Dataplane", "name": "web-1"}, origin="global",
                         to=[to_(MESH, idleTimeout="1s")]),
                  policy("svc", svc("web"), origin="zone", to=[to_(MESH, idleTimeout="2s")])],
                 {"idleTimeout": "1s"}, id="specificity-beats-origin"),
    pytest.param([policy("all", MESH, mesh="other", to=[to_(MESH, idleTimeout="1s")])],
                 {}, id="other-mesh-ignored"),
    pytest.param([policy("all", MESH, to=[to_(svc("db"), idleTimeout="1s")])],
                 {}, id="to-item-for-another-destination"),
]


@pytest.mark.parametrize(("policies", "expected"), OUTBOUND_CASES)
def test_outbound_conf(policies: list[Resource], expected: dict[str, Any]) -> None:
    assert outbound(policies) == expected


def test_zone_origin_policy_applies_only_in_its_zone() -> None:
    east = policy("east-only", MESH, origin="zone", zone="east", to=[to_(MESH, idleTimeout="1s")])
    assert outbound([east], zone="east") == {"idleTimeout": "1s"}
    assert outbound([east], zone="west") == {}
    assert outbound([east]) == {"idleTimeout": "1s"}  # zone unknown: cannot tell


def test_meshsubset_on_zone_tag() -> None:
    sub = policy("east", {"kind": "MeshSubset", "tags": {"gossamer.io/zone": "east"}},
                 to=[to_(MESH, idleTimeout="1s")])
    assert outbound([sub], zone="east") == {"idleTimeout": "1s"}
    assert outbound([sub], zone="west") == {}
    client = dataplane("client-1", inbounds=[])  # no inbounds: the zone tag still selects
    assert outbound([sub], zone="east", dp=client) == {"idleTimeout": "1s"}


def test_outbounds_keys_defaults_and_contributors() -> None:
    policies = [policy("all", MESH, to=[to_(MESH, idleTimeout="1s")]),
                policy("web", svc("web"), to=[to_(svc("db"), connectionTimeout="2s")])]
    dp = dataplane(outbounds=[{"port": 10001, "tags": {SVC: "cache"}}])
    mt = match_policies(dp, policies, destinations=["backend"]).kind("MeshTimeout")
    # the caller's destinations, the Dataplane's outbounds and services named by to[] items
    assert sorted(mt.outbounds) == ["backend", "cache", "db"]
    db = mt.outbound("db")
    assert db is not None
    assert conf_data(db.model(MeshTimeoutConf)) == {"idleTimeout": "1s", "connectionTimeout": "2s"}
    assert db.policies == (PolicyRef("MeshTimeout", "all"), PolicyRef("MeshTimeout", "web"))
    unknown = mt.outbound("never-mentioned")
    assert unknown is not None and unknown.policies == (PolicyRef("MeshTimeout", "all"),)
    assert conf_data(unknown.model(MeshTimeoutConf)) == {"idleTimeout": "1s"}


def test_nothing_applies() -> None:
    result = match_policies(dataplane(), [policy("x", svc("payments"), to=[to_(MESH,
                                                                              idleTimeout="1s")])])
    assert result.kinds == {}
    assert result.kind("MeshTimeout") == KindPolicies("MeshTimeout")
    assert result.kind("MeshTimeout").outbound("backend") is None


def test_non_policies_are_ignored() -> None:
    other_dp = dataplane("web-2")
    assert match_policies(dataplane(), [other_dp]).kinds == {}

