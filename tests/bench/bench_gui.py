"""Benchmark: what one poll of the GUI costs a control plane, against a plain list.

Run ``.venv/bin/python -m tests.bench.bench_gui``. A memory store holds ``--policies``
MeshTimeouts and ``--dataplanes`` Dataplanes of mesh ``default``; the real API app (guard,
routes, the GUI's sign-in cookie) answers through httpx's ASGI transport, so no socket
noise. For each request it prints the median of ``--rounds`` calls and the ratio to the
reference measured in the same run: the generic list of one page of the same policies
(``GET /meshtimeouts?size=20``), what the CLI's ``gossamer get`` asks for.

- ``/policies/_overviews?size=20``: the Policies page (a page of policies with the
  dataplanes each selects);
- ``/meshes/default/dataplanes/{name}/_policies``: one dataplane's matched policies;
- ``/meshes/default/services/svc-0/_callers``: who may call a service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx

from gossamer.api.app import ApiContext, build_app
from gossamer.gui.routes import gui_router
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from tests.builders import dataplane

TOKEN = "bench-admin-token"


async def _fill(manager: ResourceManager, policies: int, dataplanes: int) -> None:
    await manager.store.create(parse_document({"type": "Mesh", "name": "default"}))
    for i in range(policies):
        await manager.store.create(parse_document({
            "type": "MeshTimeout", "name": f"timeout-{i:05d}", "mesh": "default",
            "spec": {"targetRef": {"kind": "MeshService", "name": f"svc-{i % 100}"},
                     "to": [{"targetRef": {"kind": "Mesh"},
                             "default": {"connectionTimeout": "2s"}}]}}))
    for i in range(dataplanes):
        await manager.store.create(dataplane(f"dp-{i:05d}", f"svc-{i % 100}"))


async def _median(api: httpx.AsyncClient, path: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        response = await api.get(path, headers={"x-gossamer-gui": "1"})
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, (path, response.text[:200])
    return statistics.median(times)


async def run(policies: int, dataplanes: int, rounds: int) -> None:
    manager = ResourceManager(MemoryStore())
    await _fill(manager, policies, dataplanes)
    app = build_app(ApiContext(manager=manager, admin_token=TOKEN, mode="zone",
                               extra_routers=[gui_router(manager, TOKEN, "west")]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://cp") as api:
        signed = await api.post("/gui/session", headers={"authorization": f"Bearer {TOKEN}"})
        assert signed.status_code == 200
        reference = await _median(api, "/meshtimeouts?size=20", rounds)
        print(f"{policies} policies, {dataplanes} dataplanes, median of {rounds}; "
              f"load {os.getloadavg()[0]:.2f}\n")
        print("| request | median ms | ratio to the generic list |\n|---|---|---|")
        print(f"| `GET /meshtimeouts?size=20` (reference) | {reference * 1e3:.2f} | 1.00 |")
        for path in ("/policies/_overviews?size=20",
                     "/meshes/default/dataplanes/dp-00000/_policies",
                     "/meshes/default/services/svc-0/_callers"):
            took = await _median(api, path, rounds)
            print(f"| `GET {path}` | {took * 1e3:.2f} | {took / reference:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--dataplanes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.policies, args.dataplanes, args.rounds))


if __name__ == "__main__":
    main()
