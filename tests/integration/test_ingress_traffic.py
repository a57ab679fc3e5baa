"""Cross-zone traffic through the zone ingress, with real Envoys: web in west calls backend
in east through east's ingress; the ingress rides out a restart of its zone CP, two
ingresses of a zone share its traffic, and an ingress moves to a new zone token before the
old one expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import httpx

from tests.integration.agent_env import envoy_pids
from tests.integration.ingress_env import (
    BACKEND,
    Cluster,
    _offers,
    free_port,
    ingress_at,
    ingress_process,
    server_certificate,
    sidecar,
    synced_ingresses,
    uris,
)
from tests.integration.test_agent_zone import http_backend
from tests.waiting import eventually


async def test_web_in_west_calls_backend_in_east_through_the_ingress(cluster: Cluster) -> None:
    token = await cluster.zone_token("east", ["ingress"], cluster.directory / "east.token")
    outbound, admin = free_port(), free_port()
    async with http_backend(b"hello from east") as app, \
            await sidecar(cluster, cluster.east, "backend-1", "backend", app), \
            ingress_process(cluster.directory / "ingress", cluster.east, token, free_port(),
                            admin=admin), \
            await sidecar(cluster, cluster.west, "web-1", "web", free_port(), outbound):

        async def across_zones() -> bool:
            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(f"http://127.0.0.1:{outbound}/")
            return response.status_code == 200 and response.text == "hello from east"

        await eventually(across_zones, timeout=90, what="web in west -> backend in east")
        for _ in range(10):
            assert await across_zones()
        # The calls went through the ingress, which saw only TLS: it has no TLS listener
        # stats (it terminated nothing) but forwarded connections to backend's cluster.
        stats = await ingress_stats(admin)
        assert stats["cluster.backend.default.mesh.upstream_cx_total"] >= 1
        assert not [k for k in stats if k.startswith("listener.") and ".ssl." in k]


async def ingress_stats(admin: int) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=2.0) as client:
        text = (await client.get(f"http://127.0.0.1:{admin}/stats")).text
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


async def test_the_ingress_rides_out_a_restart_of_its_zone_cp(cluster: Cluster) -> None:
    # A file of its own: restarting east writes east's new zone token to east.token, and
    # the agent would follow a new token in its file (a hot restart of its Envoy).
    token = await cluster.zone_token("east", ["ingress"], cluster.directory / "ingress.token")
    port = free_port()

    def backend_behind_the_ingress() -> bool:
        cert = server_certificate(port, "backend.default.mesh")
        return cert is not None and "spiffe://default/backend" in uris(cert)

    async with http_backend(b"hello from east") as app, \
            await sidecar(cluster, cluster.east, "backend-1", "backend", app), \
            ingress_process(cluster.directory / "ingress", cluster.east, token, port) as ingress:
        await eventually(lambda: asyncio.to_thread(backend_behind_the_ingress), timeout=60,
                         what="TLS through the ingress")
        pids = envoy_pids(ingress.work)

        async with cluster.down("east"):
            # Down: Envoy keeps passing TLS through on its last configuration.
            for _ in range(3):
                assert await asyncio.to_thread(backend_behind_the_ingress)
        east = cluster.east

        # Back: the agent registers again, its Envoy is back on ADS, nothing restarted.
        await eventually(lambda: _offers(east, "east-ingress", [BACKEND]), timeout=60,
                         what="east's ZoneIngress registered again with backend")
        await eventually(lambda: east.ads.insights["ingress:east-ingress"].connected,
                         timeout=60, what="the ingress's Envoy back on ADS")
        assert await asyncio.to_thread(backend_behind_the_ingress)
        assert envoy_pids(ingress.work) == pids
        assert "Traceback" not in ingress.errors()


async def test_two_ingresses_of_a_zone_share_its_traffic(cluster: Cluster) -> None:
    """East runs two ingresses: web in west spreads its calls to backend over both (a new
    connection per call, so each call picks an ingress), and every call is answered."""
    token = await cluster.zone_token("east", ["ingress"], cluster.directory / "ingress.token")
    outbound, admin_a, admin_b = free_port(), free_port(), free_port()
    async with http_backend(b"hello from east") as app, \
            await sidecar(cluster, cluster.east, "backend-1", "backend", app), \
            ingress_process(cluster.directory / "ingress-a", cluster.east, token, free_port(),
                            "--name", "east-ingress-a", admin=admin_a), \
            ingress_process(cluster.directory / "ingress-b", cluster.east, token, free_port(),
                            "--name", "east-ingress-b", admin=admin_b), \
            await sidecar(cluster, cluster.west, "web-1", "web", free_port(), outbound):

        async def both_known() -> bool:
            names = {r.labels.get("gossamer.io/display-name", r.name)
                     for r in await synced_ingresses(cluster.west, "east")}
            return {"east-ingress-a", "east-ingress-b"} <= names

        await eventually(both_known, timeout=60, what="both of east's ingresses in west")

        async def call() -> bool:
            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(f"http://127.0.0.1:{outbound}/",
                                            headers={"connection": "close"})
            return response.status_code == 200 and response.text == "hello from east"

        await eventually(call, timeout=90, what="web in west -> backend in east")

        async def both_used() -> bool:
            for _ in range(10):
                assert await call()
            counts = [(await ingress_stats(a)).get(
                "cluster.backend.default.mesh.upstream_cx_total", 0) for a in (admin_a, admin_b)]
            return all(n >= 1 for n in counts)

        await eventually(both_used, timeout=60, interval=0.1,
                         what="calls through both of east's ingresses")


async def test_the_ingress_moves_to_a_new_zone_token_before_the_old_one_expires(
        cluster: Cluster) -> None:
    """SIGHUP moves the ingress to a zone token valid for 10 s; a long one written into
    the file (no signal) is read before that expiry. TLS keeps passing through at every
    moment, the ZoneIngress stays registered, and after the expiry the ingress's Envoy
    (hot restarted) is connected to ADS, which only the new token can be."""
    east, node = cluster.east, "ingress:east-ingress"
    token_file = await cluster.zone_token("east", ["ingress"],
                                          cluster.directory / "ingress.token")
    port, admin = free_port(), free_port()

    def backend_behind_the_ingress() -> bool:
        cert = server_certificate(port, "backend.default.mesh")
        return cert is not None and "spiffe://default/backend" in uris(cert)

    def holds() -> str | None:
        session = east.ingresses.sessions.get(node)
        return session.claims.token_id if session is not None else None

    failures: list[float] = []
    passed = [0]

    async def handshakes() -> None:
        while True:
            if await asyncio.to_thread(backend_behind_the_ingress):
                passed[0] += 1
            else:
                failures.append(time.time())

    async with http_backend(b"hello from east") as app, \
            await sidecar(cluster, east, "backend-1", "backend", app), \
            ingress_process(cluster.directory / "ingress", east, token_file, port,
                            admin=admin) as ingress:
        await eventually(lambda: asyncio.to_thread(backend_behind_the_ingress), timeout=60,
                         what="TLS through the ingress")
        load = asyncio.create_task(handshakes())
        try:
            short, short_claims = await cluster.global_cp.zone_tokens.issue(
                "east", 10, ["ingress"])
            token_file.write_text(short)
            ingress.proc.send_signal(signal.SIGHUP)
            await eventually(lambda: holds() == short_claims.token_id, timeout=10,
                             what="the ingress's session to hold the short token")
            long, long_claims = await cluster.global_cp.zone_tokens.issue(
                "east", 3600, ["ingress"])
            token_file.write_text(long)
            await eventually(lambda: holds() == long_claims.token_id, timeout=12,
                             what="the ingress to move to the long token on its own")
            assert time.time() < short_claims.expires_at
            await eventually(lambda: time.time() > short_claims.expires_at + 1, timeout=15,
                             what="the short token's expiry")
            await eventually(lambda: len(envoy_pids(ingress.work)) == 1, timeout=15,
                             what="the hot-restarted Envoy alone")
            assert (await ingress_stats(admin)).get("control_plane.connected_state") == 1
            assert await ingress_at(east, "east-ingress") is not None
            assert holds() == long_claims.token_id
        finally:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
        assert failures == [] and passed[0] > 20
        assert ingress.errors().count("Envoy hot restarted") == 2
        assert "Traceback" not in ingress.errors()

