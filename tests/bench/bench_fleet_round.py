"""Benchmark: one zone CP's fleet round in-process, and the delta engine's send and ACK.

Run ``.venv/bin/python -m tests.bench.bench_fleet_round`` (``--services 100 --instances
10``). A memory store holds ``--services`` services of ``--instances`` Dataplanes each
(one HTTP inbound, eight outbounds to the next services); a ``MeshState`` follows it and
a ``zone_cp.fleet.Fleet`` has every Dataplane as a member, each with a delta ``Engine``
subscribed as Envoy subscribes (LDS and CDS wildcard, EDS and RDS by name) and ACKing
everything. Then, per change kind, the CPU time of the round the fleet runs for it and
of the engines' responses (built, serialized as gRPC would, ACKed), and how many members
the round regenerated. The reference in the same run is every proxy generated and
encoded whole (``generate(context_for(dp))`` with one piece
cache): what any change cost before the fleet chose which proxies to regenerate and
shared their work.

Changes: ``one_service`` (a MeshTimeout on one service), ``mesh_wide`` (a MeshTimeout on
the Mesh; ``--repeat N`` makes N of them and reports the least CPU, as the machine is
shared), ``endpoint`` (one more Dataplane of one service).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from authority.bootstrap import ALLOW_ALL, DEFAULT_MESH
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from proxy.envoy import PieceCache, generate
from sync import wire
from sync.engine import Engine
from sync.messages import Request, Response
from tests.builders import dataplane_doc
from tests.waiting import eventually
from zone_cp.fleet import Fleet
from zone_cp.mesh_dns import VipView
from zone_cp.mesh_state import MeshState
from zone_cp.xds import ADS_BOUNDS
from zone_cp.xds_resources import ENDPOINT_TYPE, ROUTE_TYPE, TYPE_URLS, desired_entries


def dataplane(services: int, s: int, i: int) -> dict[str, Any]:
    return dataplane_doc(
        f"svc-{s}-{i}", f"svc-{s}", address=f"10.{s // 250}.{s % 250}.{i + 1}",
        tags={"gossamer.io/protocol": "http"},
        outbounds=[{"port": 20000 + j,
                    "tags": {"gossamer.io/service": f"svc-{(s + j + 1) % services}"}}
                   for j in range(8)])


def timeout(name: str, target: dict[str, Any], seconds: int) -> dict[str, Any]:
    return {"type": "MeshTimeout", "mesh": "default", "name": name, "spec": {
        "targetRef": target,
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": f"{seconds}s"}}]}}


def exchange(engine: Engine, sid: str, queue: list[Response]) -> int:
    """Serialize every due response and ACK it, until nothing is due; bytes sent."""
    sent = 0
    while queue:
        response = queue.pop(0)
        sent += len(wire.response_to_proto(response).SerializeToString())
        queue += engine.on_request(sid, Request(type_url=response.type_url,
                                                response_nonce=response.nonce), 0.0)
    return sent


async def run(services: int, instances: int, repeat: int = 1) -> dict[str, Any]:
    manager = ResourceManager(MemoryStore())
    for doc in [DEFAULT_MESH, ALLOW_ALL, *(dataplane(services, s, i)
                                            for s in range(services) for i in range(instances))]:
        await manager.apply(parse_document(doc, manager.registry))
    state = MeshState(manager.store, zone="bench")
    follower = asyncio.create_task(state.run())
    await eventually(lambda: state.generation > 0, what="the state to load")
    fleet = Fleet(state, VipView(state), PieceCache())
    engines: dict[str, Engine] = {}
    for dp in state.of_kind("Dataplane", "default"):
        engine = engines[dp.name] = Engine(bounds=ADS_BOUNDS)

        def deliver(_generated: object, entries: dict[str, Any], engine: Engine = engine) -> None:
            for type_url, resources in entries.items():
                engine.set_desired(type_url, resources)

        fleet.join(dp.name, dp, deliver)
        engine.connect(dp.name)
        queue: list[Response] = []
        for type_url in TYPE_URLS.values():
            named = type_url in (ENDPOINT_TYPE, ROUTE_TYPE)
            queue += engine.on_request(dp.name, Request(
                type_url=type_url, subscribe=frozenset(engine.desired(type_url)) if named
                else frozenset()), 0.0)
        exchange(engine, dp.name, queue)
    await fleet.round()  # whatever the joins left
    out: dict[str, Any] = {"services": services, "proxies": len(engines)}
    changes = [("one_service", [timeout("one", {"kind": "MeshService", "name": "svc-3"}, 6)]),
               ("mesh_wide", [timeout("all", {"kind": "Mesh"}, 7 + k) for k in range(repeat)]),
               ("endpoint", [dataplane(services, 7, instances + 1)])]
    for label, docs in changes:
        runs = []
        for doc in docs:  # the least CPU of the repeats: the machine is shared
            before = state.generation
            await manager.apply(parse_document(doc, manager.registry))
            await eventually(lambda before=before: state.generation > before, what=label)
            started = time.process_time()
            regenerated = await fleet.round()
            generated = time.process_time()
            sent = sum(exchange(e, sid, e.pending(sid, 0.0)) for sid, e in engines.items())
            done = time.process_time()
            runs.append({"regenerated": regenerated,
                         "round_cpu_s": round(generated - started, 3),
                         "send_ack_cpu_s": round(done - generated, 3), "bytes": sent})
        out[label] = {**runs[0], "round_cpu_s": min(r["round_cpu_s"] for r in runs),
                      "send_ack_cpu_s": min(r["send_ack_cpu_s"] for r in runs)}
    # The reference: what any change cost before the fleet, every proxy generated and
    # encoded whole (one piece cache for all, as the zone CP had).
    cache = PieceCache()
    started = time.process_time()
    for dp in state.of_kind("Dataplane", "default"):
        desired_entries(generate(state.context_for(dp), cache))
    out["everything"] = {"regenerated": len(engines),
                         "round_cpu_s": round(time.process_time() - started, 3)}
    out["load_average"] = os.getloadavg()[0]
    follower.cancel()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1,
                        help="mesh-wide changes to make; the least CPU of them is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.services, args.instances, args.repeat))
    full = result["everything"]["round_cpu_s"]
    print(f"{result['proxies']} proxies, {result['services']} services; every proxy "
          f"regenerated from scratch: {full:.3f} s CPU")
    for label in ("one_service", "mesh_wide", "endpoint"):
        r = result[label]
        print(f"{label:12} regenerated {r['regenerated']:5}  round {r['round_cpu_s']:.3f} s "
              f"({r['round_cpu_s'] / full:.2f} of everything)  send+ACK "
              f"{r['send_ack_cpu_s']:.3f} s  {r['bytes'] / max(r['regenerated'], 1):.0f} B/proxy")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
