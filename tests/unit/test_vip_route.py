"""VIP listeners by default: the agent's check that Envoy can bind the VIP range, and the
fix the zone CP names for a listener Envoy NACKed because it cannot."""

from __future__ import annotations

import logging

import pytest
import yaml

from gossamer.model.labels import VIP_OUTBOUNDS_LABEL
from proxy.agent import dataplane_file, vip_route
from proxy.agent.vip_route import VipRoute
from tests.builders import dataplane_doc
from zone_cp.mesh_dns import bind_hint

# Loopback is local everywhere; TEST-NET-1 is routed to lo nowhere.
BINDABLE = "127.0.0.0/8"
UNROUTED = "192.0.2.0/24"
NACK = ("Error adding/updating listener(s) outbound:240.0.0.5:80: cannot bind "
        "'240.0.0.5:80': Cannot assign requested address")


def loaded(labels: dict[str, str] | None = None) -> dataplane_file.DataplaneFile:
    doc = dataplane_doc("web-1", "web", labels=labels)
    return dataplane_file.parse(yaml.safe_dump(doc), {})


async def test_a_bindable_range_registers_the_dataplane_as_given() -> None:
    dp = loaded()
    assert await vip_route.ready(dp, VipRoute(cidr=BINDABLE)) is dp


async def test_an_unrouted_range_turns_vip_listeners_off_and_says_how_to_fix_it(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        ready = await vip_route.ready(loaded(), VipRoute(cidr=UNROUTED))
    assert ready.labels[VIP_OUTBOUNDS_LABEL] == "false"
    assert f"`ip route add local {UNROUTED} dev lo`" in caplog.text
    assert f'"{VIP_OUTBOUNDS_LABEL}": "false"' in ready.registration_json()


@pytest.mark.parametrize("choice", ["true", "false"])
async def test_a_dataplane_that_chose_is_left_alone(choice: str) -> None:
    dp = loaded({VIP_OUTBOUNDS_LABEL: choice})
    assert await vip_route.ready(dp, VipRoute(cidr=UNROUTED)) is dp


def test_the_bind_probe_tells_local_from_unrouted_ranges() -> None:
    assert vip_route.bindable(BINDABLE)
    assert not vip_route.bindable(UNROUTED)


def test_a_nack_for_an_unbindable_vip_gets_the_route_command() -> None:
    hint = bind_hint(NACK, "240.0.0.0/4")
    assert hint is not None and "`ip route add local 240.0.0.0/4 dev lo`" in hint
    assert "240.0.0.5" in hint and "--vip-route" in hint
    assert bind_hint(NACK, "10.96.0.0/12") is None  # not a VIP of this zone
    assert bind_hint("cannot bind '127.0.0.1:20001': Address already in use",
                     "240.0.0.0/4") is None
    assert bind_hint("", "240.0.0.0/4") is None
