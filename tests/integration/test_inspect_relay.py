"""``gossamer inspect dataplane NAME --config-dump|--stats|--clusters|--certs`` against real
Envoys in two zones: the real console command, run against the global (relayed to the zone over
its sync link, then to the agent over its Session) and against a zone CP, and the errors
each hop names. The global and zones east and west run in-process over real gRPC and TLS
(the ``cluster`` fixture); each sidecar is a real ``gossamer proxy run`` with its Envoy.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from global_cp.app import GlobalControlPlane
from tests.integration.ingress_env import Cluster, free_port, sidecar
from tests.integration.test_agent_zone import http_backend
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

GOSSAMER = Path(sys.executable).parent / "gossamer"


class Cli:
    """The console command with one context per control plane."""

    def __init__(self, directory: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSAMER_")}
        self.env["GOSSAMER_CONFIG"] = str(directory / "gossamer-config.yaml")

    async def run(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            str(GOSSAMER), *args, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def add(self, name: str, cp: GlobalControlPlane | ZoneControlPlane) -> None:
        token = (cp.settings.data_dir if isinstance(cp, GlobalControlPlane)
                 else cp.settings.directory) / "admin-token"
        code, _, err = await self.run("config", "control-planes", "add", "--name", name,
                                      "--address", cp.api_url, "--token-file", str(token))
        assert code == 0, err

    async def ok(self, *args: str) -> str:
        code, out, err = await self.run(*args)
        assert code == 0, f"gossamer {' '.join(args)}: {err}"
        return out


def _token(cp: GlobalControlPlane) -> str:
    return (cp.settings.data_dir / "admin-token").read_text().strip()


async def _page(cp: GlobalControlPlane, mesh: str, name: str, page: str,
                zone: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cp.api_url, timeout=30, verify=False,
                                 headers={"authorization": f"Bearer {_token(cp)}"}) as api:
        return await api.get(f"/meshes/{mesh}/dataplanes/{name}/_envoy/{page}",
                             params={"zone": zone})


async def _live_at_global(cp: GlobalControlPlane, name: str, zone: str) -> bool:
    """The sidecar's Envoy answers through the global (its agent announced the relay)."""
    response = await _page(cp, "default", name, "stats", zone)
    return response.status_code == 200 and "server.live: 1" in response.json()["body"]


@pytest.fixture
async def cli(cluster: Cluster) -> Cli:
    cli = Cli(cluster.directory)
    await cli.add("global", cluster.global_cp)
    await cli.add("west", cluster.west)
    return cli


async def test_inspect_reaches_live_envoys_in_two_zones_through_the_global(
        cluster: Cluster, cli: Cli) -> None:
    """From the global: backend-1's config dump from east, web-1's clusters and stats from
    west, each Envoy's own live answer; from west's CP: its own web-1, with no --zone."""
    async with http_backend(b"hello") as app, \
            await sidecar(cluster, cluster.east, "backend-1", "backend", app), \
            await sidecar(cluster, cluster.west, "web-1", "web", free_port(), free_port()):
        for name, zone in (("backend-1", "east"), ("web-1", "west")):
            await eventually(lambda n=name, z=zone: _live_at_global(cluster.global_cp, n, z),
                             timeout=90, what=f"{name}'s Envoy through the global")

        dump = json.loads(await cli.ok("--context", "global", "inspect", "dataplane",
                                       "backend-1", "--zone", "east", "--config-dump"))
        bootstrap = next(c["bootstrap"] for c in dump["configs"] if "bootstrap" in c)
        assert bootstrap["node"]["id"] == "dp:default:backend-1"
        listeners = next(c for c in dump["configs"] if "dynamic_listeners" in c)
        assert listeners["dynamic_listeners"], "ADS listeners in the live config"

        clusters = await cli.ok("--context", "global", "inspect", "dataplane", "web-1",
                                "-m", "default", "--zone", "west", "--clusters")
        names = {line.split("::")[0] for line in clusters.splitlines() if "::" in line}
        assert any("backend" in n for n in names), names  # web-1's outbound to backend

        stats = await cli.ok("--context", "global", "inspect", "dataplane", "web-1",
                             "--zone", "west", "--stats")
        assert "server.live: 1" in stats.splitlines()
        assert "http.admin.downstream_rq_total" in stats

        at_zone = await cli.ok("--context", "west", "inspect", "dataplane", "web-1",
                               "--stats")
        assert "server.live: 1" in at_zone.splitlines()

        certs = json.loads(await cli.ok("--context", "global", "inspect", "dataplane",
                                        "web-1", "--zone", "west", "--certs"))
        chain = [c for entry in certs["certificates"] for c in entry.get("cert_chain", ())]
        assert any("spiffe://default/web" in json.dumps(c.get("subject_alt_names", []))
                   for c in chain), chain
        assert all(int(c["days_until_expiration"]) >= 0 for c in chain)


async def test_each_hop_names_what_failed(cluster: Cluster, cli: Cli) -> None:
    """Unknown dataplane, unknown or offline zone, a missing --zone at the global, a page
    that is not one of the three, no admin token, a silent agent: each is one line that
    names it, and the relay works again once the agent answers."""
    async with http_backend(b"hello") as app, \
            await sidecar(cluster, cluster.east, "backend-1", "backend", app) as agent:
        await eventually(lambda: _live_at_global(cluster.global_cp, "backend-1", "east"),
                         timeout=90, what="backend-1's Envoy through the global")
        inspect = ("--context", "global", "inspect", "dataplane")

        code, _, err = await cli.run(*inspect, "nobody", "--zone", "east", "--stats")
        assert code != 0 and "'nobody' of mesh 'default' has no live session" in err
        assert "Traceback" not in err
        code, _, err = await cli.run(*inspect, "backend-1", "--zone", "north", "--stats")
        assert code != 0 and "zone 'north' is offline" in err
        code, _, err = await cli.run(*inspect, "backend-1", "--stats")
        assert code != 0 and "name the dataplane's zone" in err
        code, _, err = await cli.run("--context", "west", "inspect", "dataplane",
                                     "backend-1", "--zone", "east", "--stats")
        assert code != 0 and "this is zone 'west'" in err

        refused = await _page(cluster.global_cp, "default", "backend-1", "runtime_modify",
                              "east")
        assert refused.status_code == 400 and "unknown Envoy admin page" in refused.text
        async with httpx.AsyncClient(base_url=cluster.global_cp.api_url) as api:
            anonymous = await api.get("/meshes/default/dataplanes/backend-1/_envoy/stats",
                                      params={"zone": "east"})
        assert anonymous.status_code == 401

        os.kill(agent.proc.pid, signal.SIGSTOP)  # the agent reads nothing: Envoy runs on
        try:
            code, _, err = await cli.run(*inspect, "backend-1", "--zone", "east",
                                         "--stats")
            assert code != 0 and "agent did not answer within 10s" in err
        finally:
            os.kill(agent.proc.pid, signal.SIGCONT)
        await eventually(lambda: _live_at_global(cluster.global_cp, "backend-1", "east"),
                         timeout=60, what="the relay again once the agent runs")

        async with cluster.down("east"):
            await eventually(lambda: _zone_offline(cluster.global_cp), timeout=30,
                             what="the global to see east offline")
            code, _, err = await cli.run(*inspect, "backend-1", "--zone", "east", "--stats")
            assert code != 0 and "zone 'east' is offline" in err


async def _zone_offline(cp: GlobalControlPlane) -> bool:
    response = await _page(cp, "default", "backend-1", "stats", "east")
    return response.status_code == 503
