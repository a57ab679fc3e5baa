"""gossamer.model.zone: which zones are disabled, the one definition every CP uses."""

from __future__ import annotations

from gossamer.model.registry import parse_document
from gossamer.model.zone import disabled_zones, is_enabled


def test_only_a_zone_that_says_enabled_false_is_disabled() -> None:
    east = parse_document({"type": "Zone", "name": "east"})
    west = parse_document({"type": "Zone", "name": "west", "enabled": True})
    north = parse_document({"type": "Zone", "name": "north", "enabled": False})
    mesh = parse_document({"type": "Mesh", "name": "default"})
    assert [is_enabled(z) for z in (east, west, north, mesh)] == [True, True, False, True]
    assert disabled_zones([east, west, north, mesh]) == {"north"}
    assert disabled_zones([]) == set()
