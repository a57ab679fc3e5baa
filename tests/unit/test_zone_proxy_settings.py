"""What the zone ingress's and egress's commands make of their flags: the address they
advertise by default, and the registration checked with the one model of their kind."""

from __future__ import annotations

import json

import pytest

from cli.run_ingress import advertised
from proxy.agent.errors import InputError
from proxy.agent.settings import ControlPlaneAddress, checked_registration

CP = ControlPlaneAddress.parse("https://127.0.0.1:5678")


def test_a_wildcard_listener_advertises_the_hosts_address_towards_the_cp() -> None:
    assert advertised(("0.0.0.0", 10002), None, CP, "the zone's sidecars") == (
        "127.0.0.1", 10002)
    assert advertised(("0.0.0.0", 10002), ("198.51.100.7", 443), CP, "x") == (
        "198.51.100.7", 443)
    assert advertised(("10.0.0.5", 10001), None, CP, "other zones") is None


def test_the_registration_is_checked_with_its_kinds_model() -> None:
    doc = {"type": "ZoneEgress", "name": "west-egress", "meshes": ["default"],
           "networking": {"address": "0.0.0.0", "port": 10002}}
    assert json.loads(checked_registration(doc, "ZoneEgress", "zone egress")) == doc
    bad = {**doc, "networking": {"address": "0.0.0.0", "port": 70000}}
    with pytest.raises(InputError, match="zone egress's flags make no valid ZoneEgress"):
        checked_registration(bad, "ZoneEgress", "zone egress")
    ingress = {"type": "ZoneIngress", "name": "east-ingress",
               "networking": {"address": "0.0.0.0", "port": 0}}
    with pytest.raises(InputError, match="no valid ZoneIngress"):
        checked_registration(ingress, "ZoneIngress", "zone ingress")
