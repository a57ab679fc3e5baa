"""VIP listeners by default on a host where the VIP range is not routed to ``lo`` (this
test's own network namespace, the host's): real ``gossamer proxy run`` processes and
real Envoys against an in-process zone CP.

A sidecar that did not choose turns its VIP listeners off and logs the exact command
that routes the range, so Envoy NACKs nothing; one labelled ``"true"`` keeps them, Envoy
NACKs the VIP listener it cannot bind, and the Dataplane's overview (what ``gossamer
inspect dataplane`` prints) carries the same command as a hint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.agent_env import agent_process, free_port
from tests.integration.test_agent_zone import Zone
from tests.integration.test_vips_dns import _sh
from tests.waiting import eventually
from zone_cp.mesh_dns import bind_hint

DATAPLANE = """\
type: Dataplane
mesh: default
name: {name}
{labels}networking:
  address: 127.0.0.1
  inbound:
  - port: {inbound}
    servicePort: {app}
    tags: {{gossamer.io/service: {service}, gossamer.io/protocol: http}}
"""
FIX = "`ip route add local 240.0.0.0/4 dev lo`"


@pytest.fixture
async def zone(tmp_path: Path) -> AsyncIterator[Zone]:
    if "240.0.0.0/4" in _sh("ip", "route", "show", "table", "local").stdout:
        pytest.skip("SKIPPING: this host routes the VIP range to lo, so every VIP binds")
    z = Zone(tmp_path / "zone", free_port())
    await z.start()
    yield z
    await z.stop()


def write_dataplane(directory: Path, name: str, service: str, labels: str = "") -> Path:
    directory.mkdir()
    path = directory / "dataplane.yaml"
    path.write_text(DATAPLANE.format(name=name, labels=labels, inbound=free_port(),
                                     app=free_port(), service=service))
    return path


async def test_an_unroutable_vip_range_is_reported_not_nacked(tmp_path: Path,
                                                              zone: Zone) -> None:
    assert zone.cp is not None
    cp = zone.cp
    dirs = {name: tmp_path / name for name in ("backend-1", "web-1")}
    labels = {"backend-1": "", "web-1": 'labels: {gossamer.io/vip-outbounds: "true"}\n'}
    args = {}
    for name, directory in dirs.items():
        service = name.removesuffix("-1")
        dataplane = write_dataplane(directory, name, service, labels[name])
        token = await zone.token(service, directory / "token")
        args[name] = ["--dataplane", str(dataplane), "--cp", zone.url,
                      "--cp-ca", str(zone.ca), "--token-file", str(token),
                      "--admin-port", str(free_port()), "--drain-time", "1s"]
    async with agent_process(dirs["backend-1"], args["backend-1"]) as b, \
            agent_process(dirs["web-1"], args["web-1"]) as web:
        # The sidecar that did not choose: off, with the fix in its log; nothing NACKed.
        stored = await eventually(lambda: cp.state.get("Dataplane", "backend-1", "default"),
                                  60, "backend-1 registered")
        assert stored.labels["gossamer.io/vip-outbounds"] == "false"
        assert FIX in b.errors(), b.errors()
        await eventually(lambda: cp.ads.insights["dp:default:backend-1"].acked > 0, 60,
                         "backend-1's Envoy to ACK its config")

        # The one that asked: Envoy cannot bind backend's VIP and says so; inspect tells
        # the fix. (web's own VIP too: both services have one.)
        def hint() -> str | None:
            insight = cp.ads.insights.get("dp:default:web-1")
            return None if insight is None else insight.to_json().get("hint")

        found = await eventually(hint, 90, "web-1's NACK of a VIP listener, with a hint")
        assert FIX in found and "--vip-route" in found
        assert bind_hint(cp.ads.insights["dp:default:web-1"].last_nack) == found
        assert cp.ads.insights["dp:default:backend-1"].nacked == 0
        assert "Traceback" not in b.errors() + web.errors()
