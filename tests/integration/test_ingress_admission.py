"""The zone ingress, admitted and published: every generated ingress scenario passes
``envoy --mode validate``; a real ingress publishes its zone's services (with their ports)
and passes TLS through by SNI; tokens that cannot run an ingress, and a standalone zone,
refuse it with the reason.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.settings import ZoneSettings
from proxy.envoy_binary import envoy_binary
from sync.applier import zone_scoped_name
from tests.integration.agent_env import envoy_pids
from tests.integration.ingress_env import (
    BACKEND,
    MESH,
    Cluster,
    _offers,
    free_port,
    ingress_at,
    ingress_process,
    offered,
    server_certificate,
    sidecar,
    synced_ingresses,
    uris,
)
from tests.integration.test_agent_zone import http_backend
from tests.integration.test_envoy_accepts import static_bootstrap, validate
from tests.unit.ingress_scenarios import SCENARIO_NAMES, SCENARIOS, Scenario, as_data
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane
from zone_ingress.envoy import generate_ingress


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_NAMES)
def test_envoy_accepts_the_ingress_resources(scenario: Scenario, tmp_path: Path) -> None:
    validate(envoy_binary(), static_bootstrap(as_data(generate_ingress(scenario.ctx)), []),
             tmp_path)


def private_keys(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]


async def test_the_ingress_publishes_its_services_and_passes_tls_through(
        cluster: Cluster) -> None:
    east, west = cluster.east, cluster.west
    token = await cluster.zone_token("east", ["ingress"], cluster.directory / "east.token")
    port = free_port()
    async with http_backend(b"hello from east") as app, \
            await sidecar(cluster, east, "backend-1", "backend", app) as backend, \
            ingress_process(cluster.directory / "ingress", east, token, port) as ingress:
        # The ZoneIngress, with backend's one instance, at east, the global and west.
        stored = await eventually(lambda: ingress_at(east, "east-ingress"), timeout=60,
                                  what="east's ZoneIngress in east")
        assert stored.labels == {}
        assert isinstance(stored.spec, ZoneIngressSpec) and stored.spec.zone == "east"
        assert stored.spec.networking.address == "127.0.0.1"
        assert stored.spec.networking.port == port
        await eventually(lambda: _offers(east, "east-ingress", [BACKEND]), timeout=60,
                         what="backend in east's availableServices")
        at_global = zone_scoped_name("east", "", "east-ingress")
        await eventually(lambda: _offers(cluster.global_cp, at_global, [BACKEND]),
                         timeout=30, what="east's ZoneIngress at the global")

        async def in_west() -> bool:
            found = await synced_ingresses(west, "east")
            return len(found) == 1 and offered(found[0]) == [BACKEND]

        await eventually(in_west, timeout=30, what="east's ZoneIngress in west")
        # West's sidecars would send to it: backend in east, one instance, at the ingress.
        remote = await eventually(lambda: west.state.services(MESH)["backend"].remote,
                                  timeout=10, what="backend in west's mesh state")
        assert [(r.zone, r.address, r.port, r.instances) for r in remote] == [
            ("east", "127.0.0.1", port, 1)]

        # TLS passes through: the certificate behind the ingress is backend's sidecar's.
        cert = await eventually(
            lambda: asyncio.to_thread(server_certificate, port, "backend.default.mesh"),
            timeout=60, what="a certificate through the ingress")
        assert "spiffe://default/backend" in uris(cert)
        assert await asyncio.to_thread(server_certificate, port, "web.default.mesh") is None
        insight = east.ads.insights["ingress:east-ingress"]
        assert insight.acked > 0 and insight.nacked == 0, insight.last_nack

        # The ingress made no key and was given none.
        assert (ingress.work / "envoy.yaml").exists()
        assert private_keys(ingress.work) == []

        # Backend goes away: east's ingress stops offering it, here and in west.
        backend.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(backend.proc.wait(), 15) == 0, backend.errors()
        await eventually(lambda: _offers(east, "east-ingress", []), timeout=30,
                         what="backend gone from availableServices")

        async def gone_in_west() -> bool:
            found = await synced_ingresses(west, "east")
            return len(found) == 1 and offered(found[0]) == []

        await eventually(gone_in_west, timeout=30, what="backend gone from west's view")

        ingress.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(ingress.proc.wait(), 15) == 0, ingress.errors()
        assert "Traceback" not in ingress.errors()
    await eventually(lambda: _absent(east, "east-ingress"), timeout=15,
                     what="the ZoneIngress removed with its session")


async def _absent(cp: ZoneControlPlane, name: str) -> bool:
    return await ingress_at(cp, name) is None


async def refusal(directory: Path, zone: ZoneControlPlane, token: Path) -> str:
    """Run an ingress that must be refused; return its one ``error:`` line."""
    async with ingress_process(directory, zone, token, free_port(),
                               "--name", "east-ingress") as ingress:
        assert await asyncio.wait_for(ingress.proc.wait(), 30) == 1, ingress.errors()
    errors = [line for line in ingress.errors().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in ingress.errors(), ingress.errors()
    assert not envoy_pids(ingress.work)
    return errors[0]


async def test_tokens_that_cannot_run_an_ingress_are_refused_with_the_reason(
        cluster: Cluster) -> None:
    d = cluster.directory
    cp_only = await cluster.zone_token("east", ["cp"], d / "cp-only.token")
    line = await refusal(d / "cp-only", cluster.east, cp_only)
    assert "lacks the 'ingress' scope" in line and "PERMISSION_DENIED" in line, line

    dataplane = await cluster.dataplane_token("backend", d / "dataplane.token")
    line = await refusal(d / "dataplane", cluster.east, dataplane)
    assert "not a dataplane token" in line and "zone token" in line, line

    west = await cluster.zone_token("west", ["ingress"], d / "west.token")
    line = await refusal(d / "other-zone", cluster.east, west)
    assert "not for this zone ('east')" in line, line
    assert await ingress_at(cluster.east, "east-ingress") is None


async def test_a_standalone_zone_refuses_an_ingress(cluster: Cluster) -> None:
    solo = ZoneControlPlane(ZoneSettings(
        zone="solo", data_dir=cluster.directory / "solo", api_addr="127.0.0.1:0",
        xds_addr="127.0.0.1:0", store="sqlite"))
    await solo.start()
    try:
        token = await cluster.zone_token("solo", ["ingress"], cluster.directory / "solo.token")
        line = await refusal(cluster.directory / "solo-ingress", solo, token)
        assert "standalone" in line and "federate" in line, line
    finally:
        await solo.stop()

