"""``warm_routes``: the first request through a router costs what any later one does.

FastAPI builds an included router's state on the first request through it (about
0.1 s of the event loop, once per process); ``ApiServer.start`` has ``warm_routes``
build it before serving. Measured as the loop thread's CPU time of the first
``GET /meshes/default``, on a fresh app without and with the warm-up, in one test, so
machine load does not decide it.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from gossamer.api.app import ApiContext, build_app, warm_routes
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore

TOKEN = "admin-token-for-the-test"


async def first_get_cpu(warm: bool) -> float:
    app = build_app(ApiContext(manager=ResourceManager(MemoryStore()), admin_token=TOKEN,
                               mode="zone"))
    if warm:
        await warm_routes(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        started = time.thread_time()
        answer = await http.get("/meshes/default")
        took = time.thread_time() - started
        assert answer.status_code == 404  # no such Mesh: routed, answered by the handler
        assert answer.json()["detail"].startswith("Mesh 'default'")
    return took


def test_the_first_request_after_a_warm_up_is_as_cheap_as_any() -> None:
    cold = asyncio.run(first_get_cpu(warm=False))
    warmed = asyncio.run(first_get_cpu(warm=True))
    assert warmed < cold / 4, f"first GET: {warmed * 1000:.1f} ms warmed, {cold * 1000:.1f} cold"


def test_the_warm_up_answers_nothing_and_leaves_the_api_as_it_was() -> None:
    async def run() -> None:
        app = build_app(ApiContext(manager=ResourceManager(MemoryStore()), admin_token=TOKEN,
                                   mode="zone"))
        await warm_routes(app)
        await warm_routes(app)  # twice is harmless
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://cp") as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/meshes/default")).status_code == 401

    asyncio.run(run())
