"""Refusals in a federation over real gRPC with TLS: a resource a zone NACKs, or a zone
resource the global refuses, does not hold back the others; and the insights that show the
sync (overviews over HTTP, ``/metrics``, OpenTelemetry spans).
"""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import gossamer
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from sync.applier import zone_scoped_name
from tests.builders import dataplane_doc
from tests.cluster import Samples, sample, scrape
from tests.integration.federation_env import (
    TIMEOUT_URL,
    Planes,
    converged,
    get,
    online,
    timeout_policy,
)
from tests.waiting import eventually


async def test_a_nacked_resource_does_not_hold_back_the_others(planes: Planes) -> None:
    global_cp = await planes.global_cp()
    east = await planes.zone(global_cp, "east")
    await eventually(lambda: get(east, "Mesh", "default"))
    await eventually(lambda: online(global_cp, "east"))
    assert global_cp.store is not None
    # Written straight to the global's store, past the API's validation: a label the
    # zone's parser refuses, as a newer global's resource might be to an older zone.
    good = parse_document(timeout_policy("broken", 5))
    await global_cp.store.create(Resource(type=good.type, name=good.name, mesh=good.mesh,
                                          spec=good.spec, labels={"not a label!": "x"}))
    await eventually(lambda: global_cp.insights.get("east").nacked[TIMEOUT_URL] >= 1,
                     what="east to NACK the broken policy")

    manager = ResourceManager(global_cp.store)
    for i in range(3):
        await manager.apply(parse_document(timeout_policy(f"after-{i}", 4)))
    await eventually(lambda: converged([east], {"after-0": "4s", "after-1": "4s",
                                                "after-2": "4s"}))
    assert await get(east, "MeshTimeout", "broken", "default") is None
    overview = global_cp.insights.get("east").to_json()
    assert overview["byType"]["MeshTimeout"]["nacked"] >= 1
    assert overview["byType"]["MeshTimeout"]["acked"] >= 1
    samples = await scrape(global_cp.api_url)
    assert sample(samples, "gossamer_sync_messages_total", zone="east", type="MeshTimeout",
                  outcome="nacked") >= 1

    # Fixed at the global, it is no longer held back.
    await manager.apply(parse_document(timeout_policy("broken", 6)))
    await eventually(lambda: converged([east], {"broken": "6s"}))


async def test_a_zone_resource_the_global_refuses_does_not_hold_back_the_others(
        planes: Planes) -> None:
    global_cp = await planes.global_cp()
    east = await planes.zone(global_cp, "east")
    await eventually(lambda: get(east, "Mesh", "default"))
    assert east.store is not None
    good = parse_document(dataplane_doc("broken"))
    await east.store.create(Resource(type=good.type, name=good.name, mesh=good.mesh,
                                     spec=good.spec, labels={"not a label!": "x"}))
    await eventually(lambda: global_cp.insights.get("east").refused["gossamer.io/Dataplane"],
                     what="the global to refuse east's broken dataplane")
    for i in range(3):
        await east.manager.apply(parse_document(dataplane_doc(f"after-{i}")))
    for i in range(3):
        await eventually(lambda n=f"after-{i}": get(
            global_cp, "Dataplane", zone_scoped_name("east", "default", n), "default"))
    assert await get(global_cp, "Dataplane", zone_scoped_name("east", "default", "broken"),
                     "default") is None
    overview = global_cp.insights.get("east").to_json()
    assert overview["byType"]["Dataplane"]["refused"] >= 1
    assert overview["totals"]["nacked"] == 0  # east refused nothing the global sent
    samples = await scrape(global_cp.api_url)
    assert sample(samples, "gossamer_sync_messages_total", zone="east", type="Dataplane",
                  outcome="refused") >= 1


async def test_zone_overviews_metrics_and_spans_show_the_sync(
        planes: Planes, spans: InMemorySpanExporter) -> None:
    global_cp = await planes.global_cp()
    east = await planes.zone(global_cp, "east")
    west = await planes.zone(global_cp, "west")
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document(timeout_policy("slow", 5)))
    await eventually(lambda: converged([east, west], {"slow": "5s"}))
    await east.manager.apply(parse_document(dataplane_doc("backend-1")))
    await eventually(lambda: get(global_cp, "Dataplane",
                                 zone_scoped_name("east", "default", "backend-1"), "default"))
    await eventually(lambda: online(global_cp, "east") and online(global_cp, "west"))
    await planes.stop(west)
    await eventually(lambda: not global_cp.insights.get("west").online)

    headers = {"Authorization": f"Bearer {global_cp.admin_token}"}
    async with httpx.AsyncClient(base_url=global_cp.api_url, headers=headers) as client:
        one = await eventually(lambda: _acked_overview(client, "east"))
        # The API reads the stored insights: west's disconnect is stored within a second.
        everyone = await eventually(lambda: _west_offline(client))
        assert (await client.get("/zones/nowhere/_overview")).status_code == 404
        unauthenticated = await httpx.AsyncClient(base_url=global_cp.api_url).get(
            "/zones/east/_overview")
    assert unauthenticated.status_code == 401

    insight = one["insight"]
    assert one["zone"]["name"] == "east"
    assert insight["status"] == "Online"
    assert insight["version"] == gossamer.__version__
    # (connected since the start, unless a loaded machine missed a heartbeat deadline)
    assert insight["connectedAt"] and insight["lastUpdate"]
    timeouts = insight["byType"]["MeshTimeout"]
    assert timeouts["sent"] >= 1 and timeouts["acked"] == timeouts["sent"]
    assert timeouts["nacked"] == 0
    assert insight["byType"]["Dataplane"]["received"] >= 1
    assert insight["byType"]["Dataplane"]["refused"] == 0
    assert insight["byType"]["Dataplane"]["acked"] == 0  # acked: only the zone's answers
    by_name = {item["name"]: item["insight"] for item in everyone["items"]}
    assert by_name.keys() == {"east", "west"}
    assert by_name["west"]["status"] == "Offline"
    assert by_name["west"]["connectedAt"] and by_name["west"]["disconnectedAt"]

    # The metrics count every stream of this replica: east's may have been redialled
    # (this fixture declares a stream stalled after 1 s of silence), so wait for it to be
    # up again, and its sends cover at least those of the stream the overview shows.
    async def east_online() -> Samples | None:
        found = await scrape(global_cp.api_url)
        return found if sample(found, "gossamer_sync_zone_online", zone="east") == 1 else None

    samples = await eventually(east_online)
    assert sample(samples, "gossamer_sync_zone_online", zone="west") == 0
    assert sample(samples, "gossamer_sync_messages_total", zone="east", type="MeshTimeout",
                  outcome="sent") >= timeouts["sent"]
    assert sample(samples, "gossamer_sync_messages_total", zone="east", type="Dataplane",
                  outcome="received") >= 1

    names = {(s.name, str((s.attributes or {}).get("sync.type")))
             for s in spans.get_finished_spans()}
    assert ("sync.delta.send", TIMEOUT_URL) in names  # the global to each zone
    assert ("sync.delta.apply", TIMEOUT_URL) in names  # each zone storing it
    assert ("sync.delta.send", "gossamer.io/Dataplane") in names  # a zone to the global
    assert ("sync.delta.apply", "gossamer.io/Dataplane") in names


async def _west_offline(client: httpx.AsyncClient) -> dict[str, Any] | None:
    body: dict[str, Any] = (await client.get("/zones/_overviews")).json()
    west = [i["insight"] for i in body["items"] if i["name"] == "west"]
    return body if west and west[0]["status"] == "Offline" else None


async def _acked_overview(client: httpx.AsyncClient, zone: str) -> dict[str, Any] | None:
    response = await client.get(f"/zones/{zone}/_overview")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    timeouts = body["insight"]["byType"].get("MeshTimeout", {})
    return body if timeouts.get("acked") and timeouts["acked"] == timeouts["sent"] else None

