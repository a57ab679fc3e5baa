"""``gossamer check`` against a standalone zone with real sidecars (``gossamer proxy run``
processes and real Envoys) on a host where the VIP range is not routed to ``lo``.

One sidecar keeps its VIP listeners (``gossamer.io/vip-outbounds: "true"``): Envoy cannot
bind the VIPs and NACKs its listeners, so the check names that proxy, and the fix is the
route command. The other did not choose: its VIP listeners are turned off, nothing is
NACKed, and the check names it as a sidecar with no path to ``.mesh`` VIPs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.agent_env import agent_process, free_port
from tests.integration.test_agent_zone import Zone
from tests.integration.test_cli_check import run_check
from tests.integration.test_vip_listener_defaults import write_dataplane
from tests.integration.test_vips_dns import _sh
from tests.waiting import eventually


@pytest.fixture
async def zone(tmp_path: Path) -> AsyncIterator[Zone]:
    if "240.0.0.0/4" in _sh("ip", "route", "show", "table", "local").stdout:
        pytest.skip("SKIPPING: this host routes the VIP range to lo, so every VIP binds")
    z = Zone(tmp_path / "zone", free_port())
    await z.start()
    yield z
    await z.stop()


async def test_a_nacking_proxy_and_a_sidecar_without_vips_fail_the_check(
        tmp_path: Path, zone: Zone) -> None:
    assert zone.cp is not None
    cp = zone.cp
    labels = {"backend-1": "", "web-1": 'labels: {gossamer.io/vip-outbounds: "true"}\n'}
    args = {}
    for name, label in labels.items():
        directory = tmp_path / name
        service = name.removesuffix("-1")
        dataplane = write_dataplane(directory, name, service, label)
        token = await zone.token(service, directory / "token")
        args[name] = ["--dataplane", str(dataplane), "--cp", zone.url, "--cp-ca",
                      str(zone.ca), "--token-file", str(token), "--admin-port",
                      str(free_port()), "--drain-time", "1s"]
    async with agent_process(tmp_path / "backend-1", args["backend-1"]), \
            agent_process(tmp_path / "web-1", args["web-1"]):
        await eventually(lambda: cp.ads.insights["dp:default:web-1"].tally.nacking, 90,
                         "web-1's Envoy to NACK the VIP listener it cannot bind")
        await eventually(lambda: cp.ads.insights["dp:default:backend-1"].acked > 0, 60,
                         "backend-1's Envoy to ACK its config")
        checked = await run_check(cp, tmp_path)

    assert checked.code == 1, checked.out
    nack = checked.line("✗ proxy NACKing its config: lab/default/web-1")
    assert "Envoy refused its" in nack and "Listener" in nack
    assert "fix: Envoy cannot bind the VIP" in checked.out
    assert "ip route add local 240.0.0.0/4 dev lo" in checked.out
    checked.line("✗ VIP range routed or transparent proxy: lab/default/backend-1")
    assert "lab/default/backend-1" not in checked.line("✗ proxy NACKing")
    assert "VIP range routed or transparent proxy: lab/default/web-1" not in checked.out
    checked.line("✓ API reachable")
    checked.line("✓ mesh default CA backend")
    checked.line("✓ no workload certificate near expiry")
    assert "zone lab online" not in checked.out  # standalone: no global to be online to
