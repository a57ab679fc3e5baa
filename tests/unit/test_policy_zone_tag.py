"""The zone tag policy matching sees is the control plane's, not one an inbound sets."""

from __future__ import annotations

from gossamer.model.labels import ZONE_TAG
from gossamer.model.registry import parse_document
from gossamer.policy.selectors import ProxyView
from tests.builders import dataplane_doc


def test_the_cps_zone_wins_over_an_inbound_zone_tag() -> None:
    dp = parse_document(dataplane_doc("web-1", "web", tags={ZONE_TAG: "other"}))
    (inbound,) = ProxyView.of(dp, zone="lab").inbounds
    assert inbound.tags[ZONE_TAG] == "lab"
