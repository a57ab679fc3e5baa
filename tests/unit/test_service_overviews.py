"""Where each service runs, from dataplanes and other zones' ingresses."""

from __future__ import annotations

from typing import Any

from gossamer.api.services import service_overviews
from gossamer.model.registry import parse_document


def dp(name: str, service: str, zone: str | None = None) -> Any:
    doc: dict[str, Any] = {"type": "Dataplane", "name": name, "mesh": "default",
                           "networking": {"address": "10.0.0.1", "inbound": [
                               {"port": 18080, "tags": {"gossamer.io/service": service,
                                                        "gossamer.io/protocol": "http"}}]}}
    if zone:
        doc["labels"] = {"gossamer.io/zone": zone}
    return parse_document(doc)


def ingress(zone: str, service: str, instances: int) -> Any:
    return parse_document({
        "type": "ZoneIngress", "name": f"{zone}-ingress", "labels": {"gossamer.io/zone": zone},
        "networking": {"address": "10.9.0.1"},
        "availableServices": [{"mesh": "default", "instances": instances,
                               "tags": {"gossamer.io/service": service}}]})


def test_at_a_zone_local_dataplanes_and_remote_ingresses() -> None:
    rows = service_overviews([dp("b1", "backend"), dp("b2", "backend"), dp("w1", "web")],
                             [ingress("east", "backend", 3), ingress("west", "web", 9)],
                             local_zone="west")
    assert [(r["service"], r["zone"], r["instances"], r["via"]) for r in rows] == [
        ("backend", "east", 3, "ingress"), ("backend", "west", 2, "dataplanes"),
        ("web", "west", 1, "dataplanes")]


def test_at_the_global_every_zone_from_its_dataplanes() -> None:
    rows = service_overviews([dp("b1", "backend", "east"), dp("b1", "backend", "west")],
                             [ingress("east", "backend", 1)], local_zone="")
    assert [(r["zone"], r["instances"], r["via"]) for r in rows] == [
        ("east", 1, "dataplanes"), ("west", 1, "dataplanes")]
