"""The zone ingress against real control planes and real Envoys.

A global and two zones (``east``, ``west``) run in-process over real gRPC with TLS;
sidecars and ingresses are real ``gossamer proxy run`` / ``gossamer ingress run``
processes with real Envoys. In east: ``backend`` (a tiny HTTP server behind its sidecar)
and east's ingress, with a zone token the global issued with the ``ingress`` scope.

- east's ZoneIngress, with backend's one instance in ``availableServices``, reaches the
  global and zone west, and follows backend's sidecar going away;
- the ingress passes TLS through: ``openssl s_client`` with SNI
  ``backend.default.mesh`` at the ingress's port sees backend's sidecar's own
  certificate (``spiffe://default/backend``), and another SNI gets no certificate;
- the ingress's work directory holds no private key;
- an ingress with a zone token without the ``ingress`` scope, with a dataplane token, or
  at a standalone zone is refused with the reason;
- every scenario of ``tests/unit/test_ingress.py`` passes ``envoy --mode validate``;
- the ingress rides out a restart of its zone CP (Envoy untouched, registered again);
- end to end: ``web`` in west calls backend in east through its explicit outbound, over
  mTLS from sidecar to sidecar through east's ingress (both zones sign with
  intermediates of the one mesh root the global keeps);
- a zone with two ingresses: the other zone's calls go through both;
- the ingress follows its token file: a zone token replaced before it expires moves the
  session and Envoy (hot restart) to the new one without a failed handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from authority.token_authority import TokenAuthority
from global_cp.app import GlobalControlPlane
from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.labels import ORIGIN_LABEL, ZONE_LABEL
from gossamer.model.tokentrust import trust_name
from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.resources import ResourceManager
from gossamer.settings import ZoneSettings
from gossamer.store.base import ListQuery
from gossamer.tokens import DATAPLANE
from proxy.envoy_binary import envoy_binary
from sync.applier import zone_scoped_name
from tests.cluster import start_global, start_zone
from tests.integration.agent_env import AgentProcess, agent_process, envoy_pids
from tests.integration.test_agent_zone import DATAPLANE_YAML, OUTBOUND, http_backend
from tests.integration.test_envoy_accepts import static_bootstrap, validate
from tests.unit.test_ingress import SCENARIO_NAMES, SCENARIOS, Scenario, as_data
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane
from zone_ingress.envoy import generate_ingress

ROOT = Path(__file__).parents[2]
MESH = "default"
# Below Linux's ephemeral range (32768-60999): a port picked there can be taken by any
# outgoing connection on the host before Envoy binds it (seen as a NACKed listener).
QUIET_PORTS = (20000, 32000)


def free_port() -> int:
    """A port free right now outside the ephemeral range, for a listener started later."""
    while True:
        port = random.randrange(*QUIET_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_NAMES)
def test_envoy_accepts_the_ingress_resources(scenario: Scenario, tmp_path: Path) -> None:
    validate(envoy_binary(), static_bootstrap(as_data(generate_ingress(scenario.ctx)), []),
             tmp_path)


@dataclass
class Cluster:
    global_cp: GlobalControlPlane
    east: ZoneControlPlane
    west: ZoneControlPlane
    directory: Path
    running: list[ZoneControlPlane] = field(default_factory=list)

    @property
    def global_manager(self) -> ResourceManager:
        assert self.global_cp.store is not None
        return ResourceManager(self.global_cp.store)

    async def dataplane_token(self, service: str, path: Path) -> Path:
        """Federated zones admit dataplane tokens the global signs (its public keys, a
        TokenTrust, synced down; the signing keys stay at the global)."""
        token, _ = await TokenAuthority(self.global_manager, DATAPLANE, MESH).issue(
            service, 3600)
        path.write_text(token)
        for zone in (self.east, self.west):
            await eventually(lambda z=zone: _has_token_trust(z), timeout=15,
                             what="the global's dataplane TokenTrust in the zone")
        return path

    @contextlib.asynccontextmanager
    async def down(self, name: str, **overrides: Any) -> AsyncIterator[None]:
        """Zone ``name``'s CP (``east`` or ``west``) stopped for the block, then started
        again in its place: same data, same xDS port; ``overrides`` replace other
        ``ZoneSettings`` fields of the new one."""
        old: ZoneControlPlane = getattr(self, name)
        assert old.xds is not None
        port = old.xds.port
        self.running.remove(old)
        await stop(old)
        try:
            yield
        finally:
            new = await start_zone(self.global_cp, name, old.settings.directory,
                                   xds_addr=f"127.0.0.1:{port}", **overrides)
            setattr(self, name, new)
            self.running.append(new)

    async def restart_global(self) -> None:
        """Stop the global and start a new one on the same store and ports."""
        old = self.global_cp
        assert old.sync is not None and old._api is not None
        api_port, sync_port = old._api.port, old.sync.port
        await stop(old)
        self.global_cp = await start_global(
            old.settings.data_dir, api_addr=f"127.0.0.1:{api_port}",
            sync_addr=f"127.0.0.1:{sync_port}")

    async def zone_token(self, zone: str, scopes: list[str], path: Path) -> Path:
        token, _ = await self.global_cp.zone_tokens.issue(zone, 3600, scopes)
        path.write_text(token)
        return path


async def _has_token_trust(zone: ZoneControlPlane) -> bool:
    try:
        trust = await zone.manager.get("TokenTrust", trust_name(DATAPLANE, MESH))
    except NotFound:
        return False
    return ORIGIN_LABEL in trust.labels


async def _ready(zone: ZoneControlPlane) -> bool:
    try:
        await zone.manager.get("Mesh", MESH)
        await zone.manager.get("TokenTrust", "zone")
    except NotFound:
        return False
    return True


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """The global and zones east and west, in sync; whichever control planes are current
    at the end are stopped (a test may restart any of them: ``down``, ``restart_global``)."""
    running = Cluster(await start_global(tmp_path / "global"), None, None,  # type: ignore[arg-type]
                      tmp_path)
    try:
        for name in ("east", "west"):
            running.running.append(await start_zone(running.global_cp, name,
                                                     tmp_path / f"zone-{name}"))
        running.east, running.west = running.running
        for zone in running.running:
            await eventually(lambda z=zone: _ready(z), timeout=15,
                             what=f"zone {zone.settings.zone} in sync")
        yield running
    finally:
        for cp in [*running.running, running.global_cp]:
            await stop(cp)


async def stop(cp: ZoneControlPlane | GlobalControlPlane, timeout: float = 30.0) -> None:
    """Stop a control plane; one that does not stop fails the test with what it awaits."""
    task = asyncio.ensure_future(cp.stop())
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if task in done:
        task.result()
        return
    stacks = []
    for pending in asyncio.all_tasks():
        frames = pending.get_stack(limit=8)
        stacks.append(f"{pending.get_name()}: " + " <- ".join(
            f"{f.f_code.co_filename.rsplit('/', 2)[-1]}:{f.f_lineno} {f.f_code.co_name}"
            for f in frames))
    raise AssertionError(f"{type(cp).__name__} did not stop in {timeout:g}s; tasks:\n"
                         + "\n".join(stacks))


def _cp_args(zone: ZoneControlPlane) -> list[str]:
    assert zone.xds is not None
    return ["--cp", f"https://127.0.0.1:{zone.xds.port}",
            "--cp-ca", str(zone.settings.directory / "tls" / "ca.pem")]


@contextlib.asynccontextmanager
async def ingress_process(directory: Path, zone: ZoneControlPlane, token: Path, port: int,
                          *extra: str, admin: int | None = None
                          ) -> AsyncIterator[AgentProcess]:
    """``gossamer ingress run`` as a process, listening on 127.0.0.1:``port``."""
    directory.mkdir(parents=True, exist_ok=True)
    work, stderr = directory / "work", directory / "ingress.err"
    args = [*_cp_args(zone), "--token-file", str(token), "--listen", f"127.0.0.1:{port}",
            "--admin-port", str(admin or free_port()), "--drain-time", "1s",
            "--work-dir", str(work), *extra]
    with open(stderr, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from cli.run_ingress import run; run()", *args,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
    try:
        yield AgentProcess(proc, work, stderr)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in envoy_pids(work):
            os.kill(pid, signal.SIGKILL)


async def sidecar(cluster: Cluster, zone: ZoneControlPlane, name: str, service: str,
                  app_port: int, outbound: int | None = None, dataplane: str = DATAPLANE_YAML
                  ) -> contextlib.AbstractAsyncContextManager[AgentProcess]:
    """``gossamer proxy run`` for ``name`` in ``zone`` from the template ``dataplane``
    (variables name, service, inbound, app and, with ``outbound``, an outbound to
    backend)."""
    directory = cluster.directory / name
    directory.mkdir(parents=True)
    dp = directory / "dataplane.yaml"
    dp.write_text(dataplane + (OUTBOUND if outbound else ""))
    token = await cluster.dataplane_token(service, directory / "token")
    args = ["--dataplane", str(dp), "--dataplane-var", f"name={name}",
            "--dataplane-var", f"service={service}",
            "--dataplane-var", f"inbound={free_port()}", "--dataplane-var", f"app={app_port}",
            *_cp_args(zone), "--token-file", str(token),
            "--admin-port", str(free_port()), "--drain-time", "1s"]
    if outbound:
        args += ["--dataplane-var", f"outbound={outbound}"]
    return agent_process(directory, args)


def offered(res: Resource | None) -> list[tuple[str, dict[str, str], int]]:
    if res is None:
        return []
    assert isinstance(res.spec, ZoneIngressSpec)
    return [(a.mesh, dict(a.tags), a.instances) for a in res.spec.available_services]


async def ingress_at(cp: ZoneControlPlane | GlobalControlPlane, name: str) -> Resource | None:
    assert cp.store is not None
    try:
        return await cp.store.get("ZoneIngress", name)
    except NotFound:
        return None


async def synced_ingresses(zone: ZoneControlPlane, owner: str) -> list[Resource]:
    assert zone.store is not None
    page = await zone.store.list(ListQuery("ZoneIngress"))
    return [r for r in page.items if r.labels.get(ZONE_LABEL) == owner]


def server_certificate(port: int, server_name: str) -> x509.Certificate | None:
    """The first certificate the server at ``port`` presents for ``server_name``."""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", server_name,
         "-showcerts"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    begin = result.stdout.find("-----BEGIN CERTIFICATE-----")
    if begin < 0:
        return None
    end = result.stdout.index("-----END CERTIFICATE-----", begin)
    pem = result.stdout[begin:end + len("-----END CERTIFICATE-----")]
    return x509.load_pem_x509_certificate(pem.encode())


def uris(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def private_keys(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]


BACKEND = (MESH, {"gossamer.io/service": "backend", "gossamer.io/protocol": "http"}, 1)


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


async def _offers(cp: ZoneControlPlane | GlobalControlPlane, name: str,
                  expected: list[tuple[str, dict[str, str], int]]) -> bool:
    res = await ingress_at(cp, name)
    return res is not None and offered(res) == expected


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
