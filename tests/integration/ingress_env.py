"""The zone-ingress harness: a global and two zones (``east``, ``west``) in-process over
real gRPC with TLS (``Cluster``; the ``cluster`` fixture in
``tests/integration/conftest.py``), real ``gossamer ingress run`` and ``gossamer proxy run``
processes with real Envoys (``ingress_process``, ``sidecar``), and reads of what the zones
sync about their ingresses. Shared by the ingress, CA-rotation and zone-restart tests.
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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from authority.token_authority import TokenAuthority
from global_cp.app import GlobalControlPlane
from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.labels import ORIGIN_LABEL, ZONE_LABEL
from gossamer.model.tokentrust import trust_name
from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.resources import ResourceManager
from gossamer.store.base import ListQuery
from gossamer.tokens import DATAPLANE
from tests.cluster import start_global, start_zone
from tests.integration.agent_env import AgentProcess, agent_process, envoy_pids
from tests.integration.test_agent_zone import DATAPLANE_YAML, OUTBOUND
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

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
    host = zone.settings.xds_addr.rsplit(":", 1)[0]
    return ["--cp", f"https://{host}:{zone.xds.port}",
            "--cp-ca", str(zone.settings.directory / "tls" / "ca.pem")]


@contextlib.asynccontextmanager
async def ingress_process(directory: Path, zone: ZoneControlPlane, token: Path, port: int,
                          *extra: str, admin: int | None = None, host: str = "127.0.0.1",
                          command: str = "cli.run_ingress") -> AsyncIterator[AgentProcess]:
    """``gossamer ingress run`` (or with ``command="cli.run_egress"``, ``gossamer egress
    run``) as a process, listening on ``host``:``port``; the zone CP dialled at its xDS
    address."""
    directory.mkdir(parents=True, exist_ok=True)
    work, stderr = directory / "work", directory / "ingress.err"
    args = [*_cp_args(zone), "--token-file", str(token), "--listen", f"{host}:{port}",
            "--admin-port", str(admin or free_port()), "--drain-time", "1s",
            "--work-dir", str(work), *extra]
    with open(stderr, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"from {command} import run; run()", *args,
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


BACKEND = (MESH, {"gossamer.io/service": "backend", "gossamer.io/protocol": "http"}, 1)


async def _offers(cp: ZoneControlPlane | GlobalControlPlane, name: str,
                  expected: list[tuple[str, dict[str, str], int]]) -> bool:
    res = await ingress_at(cp, name)
    return res is not None and offered(res) == expected

