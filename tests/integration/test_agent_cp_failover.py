"""Sidecars given several ``--cp`` addresses follow the zone CP to whichever answers: real
``gossamer proxy run`` processes with real Envoys, the zone CP in-process (standalone,
SQLite). Two zone CP replicas need the leader work, so one zone CP stands for them,
reachable at one of the two addresses at a time.

- The first address refuses connections: both agents register, and both Envoys get their
  configuration, through the second (traffic flows web -> backend over mTLS).
- The zone CP stops and starts again on the first address only: traffic keeps flowing
  meanwhile, the agents register again there, and a new policy reaches the Envoys, whose
  ADS stream moved too.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

from gossamer.model.registry import parse_document
from tests.integration.agent_env import AgentProcess, agent_process, free_port
from tests.integration.test_agent_zone import (
    DATAPLANE_YAML,
    DENY_WEB,
    OUTBOUND,
    Zone,
    get,
    http_backend,
)
from tests.waiting import eventually

NODES = {"dp:default:backend-1", "dp:default:web-1"}


async def sidecar(directory: Path, zone: Zone, cps: list[str], name: str, service: str,
                  app_port: int, outbound: int | None = None
                  ) -> contextlib.AbstractAsyncContextManager[AgentProcess]:
    directory.mkdir(parents=True)
    dp = directory / "dataplane.yaml"
    dp.write_text(DATAPLANE_YAML + (OUTBOUND if outbound else ""))
    token = await zone.token(service, directory / "token")
    args = ["--dataplane", str(dp), "--dataplane-var", f"name={name}",
            "--dataplane-var", f"service={service}",
            "--dataplane-var", f"inbound={free_port()}", "--dataplane-var", f"app={app_port}",
            "--cp", ",".join(cps), "--token-file", str(token), "--cp-ca", str(zone.ca),
            "--admin-port", str(free_port()), "--drain-time", "1s"]
    if outbound:
        args += ["--dataplane-var", f"outbound={outbound}"]
    return agent_process(directory, args)


async def test_sidecars_follow_the_zone_cp_across_its_addresses(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    zone = Zone(tmp_path / "zone", second)  # nothing listens on first yet
    await zone.start()
    cps = [f"https://127.0.0.1:{first}", f"https://127.0.0.1:{second}"]
    outbound = free_port()
    try:
        async with http_backend(b"hello from backend") as backend_port, \
                await sidecar(tmp_path / "backend", zone, cps, "backend-1", "backend",
                              backend_port) as backend, \
                await sidecar(tmp_path / "web", zone, cps, "web-1", "web", free_port(),
                              outbound) as web:

            async def status_is(code: int) -> bool:
                return (await get(outbound)).status_code == code

            await eventually(lambda: status_is(200), timeout=60,
                             what="web -> backend, configured through the second address")

            await zone.stop()
            zone.xds_port = first  # the same zone CP, now only at the first address
            assert await status_is(200)  # Envoy keeps its last configuration
            cp = await zone.start()
            answering = time.monotonic()
            await eventually(lambda: set(cp.agents.sessions) >= NODES, timeout=30,
                             what="both agents registered at the first address")
            registered = time.monotonic() - answering
            await cp.manager.apply(parse_document(DENY_WEB))
            await eventually(lambda: status_is(403), timeout=30,
                             what="the deny, through Envoy's ADS at the first address")
            print(f"agents registered {registered:.2f} s after the zone CP answered on the "
                  f"other address; the deny enforced {time.monotonic() - answering:.2f} s "
                  f"after")
            for agent in (web, backend):
                agent.proc.send_signal(signal.SIGTERM)
            for agent in (web, backend):
                assert await asyncio.wait_for(agent.proc.wait(), 15) == 0, agent.errors()
                assert "Traceback" not in agent.errors()
    finally:
        await zone.stop()
