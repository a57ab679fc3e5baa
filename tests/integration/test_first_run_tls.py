"""First runs over TLS: control planes on wildcard binds, called by IP, no ``--tls-host``.

A global and a zone run in-process with every port on ``0.0.0.0`` and no ``--tls-host``;
their serving certificates name the host's interface addresses by default
(``gossamer.pki.serving``). Through this host's non-loopback IP (from ``hostname -I``):
the zone dials the global (``grpcs://IP:PORT`` with ``--global-ca``), a real sidecar
registers with the zone (``--cp https://IP:PORT --cp-ca``) and the real ``gossamer`` CLI
reads both APIs (``--ca-file``).

When the certificate does not verify, the zone and the agent say the address they dialled
and the flag that fixes it (``gossamer.pki.dial_errors``): 127.0.0.2 reaches the wildcard
binds but is named by no certificate; another control plane's CA verifies nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authority.token_authority import TokenAuthority
from global_cp.app import GlobalControlPlane
from gossamer.pki.serving import ensure_serving_tls
from gossamer.resources import ResourceManager
from gossamer.tokens import DATAPLANE
from tests.cluster import start_global, start_zone
from tests.integration.agent_env import AgentProcess, agent_process, free_port
from tests.integration.ingress_env import _has_token_trust, stop
from tests.integration.test_agent_zone import DATAPLANE_YAML
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

GOSSAMER = Path(sys.executable).parent / "gossamer"
UNNAMED = "127.0.0.2"  # reaches a wildcard bind; in no certificate (lo holds 127.0.0.1)


def host_ip() -> str:
    """This host's first non-loopback IPv4 address, as ``hostname -I`` reports it."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False)
    for word in out.stdout.split():
        ip = ipaddress.ip_address(word)
        if ip.version == 4 and not ip.is_loopback:
            return word
    pytest.skip("this host has no non-loopback IPv4 address")


@pytest.fixture
async def wildcard_global(tmp_path: Path) -> AsyncIterator[GlobalControlPlane]:
    cp = await start_global(tmp_path / "global", api_addr=f"0.0.0.0:{free_port()}",
                            sync_addr="0.0.0.0:0")
    try:
        yield cp
    finally:
        await stop(cp)


async def wildcard_zone(global_cp: GlobalControlPlane, directory: Path, dial: str,
                        **overrides: object) -> ZoneControlPlane:
    """Zone ``east``, every port on 0.0.0.0, dialling the global's sync port at ``dial``."""
    assert global_cp.sync is not None
    return await start_zone(global_cp, "east", directory, api_addr="0.0.0.0:0",
                            xds_addr="0.0.0.0:0",
                            global_url=f"grpcs://{dial}:{global_cp.sync.port}", **overrides)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSAMER_")}
    env["GOSSAMER_CONFIG"] = str(config)
    return subprocess.run([str(GOSSAMER), *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


async def cli_reads_meshes(config: Path, name: str, url: str, data_dir: Path) -> None:
    added = await asyncio.to_thread(
        cli, config, "config", "control-planes", "add", name, "--address", url,
        "--ca-file", str(data_dir / "tls" / "ca.pem"),
        "--token-file", str(data_dir / "admin-token"))
    assert added.returncode == 0, added.stderr
    got = await asyncio.to_thread(cli, config, "--context", name, "get", "meshes")
    assert got.returncode == 0, got.stderr
    assert "default" in got.stdout


def sidecar(directory: Path, cp_url: str, ca: Path, token: Path
            ) -> contextlib.AbstractAsyncContextManager[AgentProcess]:
    directory.mkdir(parents=True, exist_ok=True)
    dp = directory / "dataplane.yaml"
    dp.write_text(DATAPLANE_YAML)
    return agent_process(directory, [
        "--dataplane", str(dp), "--dataplane-var", "name=backend-1",
        "--dataplane-var", "service=backend", "--dataplane-var", f"inbound={free_port()}",
        "--dataplane-var", f"app={free_port()}", "--cp", cp_url, "--cp-ca", str(ca),
        "--token-file", str(token), "--admin-port", str(free_port()), "--drain-time", "1s"])


async def test_control_planes_on_wildcards_are_reached_by_ip_without_tls_host(
        tmp_path: Path, wildcard_global: GlobalControlPlane) -> None:
    ip = host_ip()
    zone = await wildcard_zone(wildcard_global, tmp_path / "zone-east", ip)
    try:
        await eventually(lambda: zone.sync.status.connected, timeout=30,
                         what=f"zone east in sync with the global at {ip}")
        # A sidecar of the zone, by the zone's IP.
        assert wildcard_global.store is not None and zone.xds is not None
        token, _ = await TokenAuthority(ResourceManager(wildcard_global.store), DATAPLANE,
                                        "default").issue("backend", 3600)
        (tmp_path / "token").write_text(token)
        await eventually(lambda: _has_token_trust(zone), timeout=30,
                         what="the global's dataplane TokenTrust in the zone")
        async with sidecar(tmp_path / "backend", f"https://{ip}:{zone.xds.port}",
                           zone.settings.directory / "tls" / "ca.pem",
                           tmp_path / "token") as agent:
            await eventually(lambda: "dp:default:backend-1" in zone.agents.sessions,
                             timeout=60, what=f"the sidecar registered at {ip}")
            assert "Traceback" not in agent.errors()
        # The CLI, by IP, to both APIs.
        assert wildcard_global._api is not None and zone._api is not None
        config = tmp_path / "config.yaml"
        await cli_reads_meshes(config, "global", f"https://{ip}:{wildcard_global._api.port}",
                               wildcard_global.settings.data_dir)
        await cli_reads_meshes(config, "east", f"https://{ip}:{zone._api.port}",
                               zone.settings.directory)
    finally:
        await stop(zone)


async def test_a_zone_names_the_address_and_the_flag_when_the_global_does_not_verify(
        tmp_path: Path, wildcard_global: GlobalControlPlane) -> None:
    assert wildcard_global.sync is not None
    zone = await wildcard_zone(wildcard_global, tmp_path / "zone-east", UNNAMED)
    try:
        error = await eventually(
            lambda: "does not name" in zone.sync.status.last_error
            and zone.sync.status.last_error, timeout=30, what="the zone's sync error")
        assert error == (f"the certificate of {UNNAMED}:{wildcard_global.sync.port} does not "
                         f"name {UNNAMED}: start that control plane with --tls-host "
                         f"{UNNAMED} (or call it by a name its certificate has)")
    finally:
        await stop(zone)
    other = ensure_serving_tls(tmp_path / "other", "someone-else", []).ca_file
    zone = await wildcard_zone(wildcard_global, tmp_path / "zone-east-2", "127.0.0.1",
                               global_ca=other)
    try:
        error = await eventually(
            lambda: "does not verify" in zone.sync.status.last_error
            and zone.sync.status.last_error, timeout=30, what="the zone's sync error")
        assert f"127.0.0.1:{wildcard_global.sync.port}" in error
        assert f"--global-ca {other}" in error and "tls/ca.pem" in error
    finally:
        await stop(zone)


async def test_an_agent_names_the_address_and_the_flag_when_its_cp_does_not_verify(
        tmp_path: Path, wildcard_global: GlobalControlPlane) -> None:
    zone = await wildcard_zone(wildcard_global, tmp_path / "zone-east", "127.0.0.1")
    assert zone.xds is not None
    port = zone.xds.port
    ca = zone.settings.directory / "tls" / "ca.pem"
    other = ensure_serving_tls(tmp_path / "other", "someone-else", []).ca_file
    token = tmp_path / "token"
    token.write_text("not.checked.before-the-handshake")
    try:
        async with sidecar(tmp_path / "by-unnamed", f"https://{UNNAMED}:{port}", ca,
                           token) as agent:
            await eventually(lambda: "does not name" in agent.errors(), timeout=30,
                             what="the agent's error")
            assert (f"the certificate of {UNNAMED}:{port} does not name {UNNAMED}: start "
                    f"that control plane with --tls-host {UNNAMED}") in agent.errors()
            assert "Hostname Verification" not in agent.errors()
        async with sidecar(tmp_path / "wrong-ca", f"https://127.0.0.1:{port}", other,
                           token) as agent:
            await eventually(lambda: "does not verify" in agent.errors(), timeout=30,
                             what="the agent's error")
            assert (f"the certificate of 127.0.0.1:{port} does not verify with --cp-ca "
                    f"{other}") in agent.errors()
            assert "Traceback" not in agent.errors()
    finally:
        await stop(zone)
