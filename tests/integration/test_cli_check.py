"""``gossamer check`` against a real global and two real zones over real gRPC with TLS.

The CLI runs in a worker thread (its HTTP calls reach the control planes served on this
test's loop) with its context in the environment. Each zone advertises a ZoneIngress at an
address of the test's choosing: one a listening TCP socket, one a port nothing listens on,
so the zone CPs' probes of each other's ingress (``zone_cp.ingress_probe``) meet a real
accept and a real refusal.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from cli.main import main
from cli.state import Runtime
from global_cp.app import GlobalControlPlane
from gossamer.model.registry import parse_document
from tests.cluster import zone_token
from tests.integration.federation_env import Planes, online
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

MONTH = 30 * 86400.0


@dataclass
class Checked:
    code: int
    out: str

    def line(self, start: str) -> str:
        found = [ln for ln in self.out.splitlines() if ln.startswith(start)]
        assert found, f"no line starting {start!r} in:\n{self.out}"
        return found[0]


async def run_check(cp: GlobalControlPlane | ZoneControlPlane, tmp: Path,
                    *args: str) -> Checked:
    token = tmp / f"admin-{id(cp)}"
    token.write_text(cp.admin_token)
    env = {"GOSSAMER_ADDRESS": cp.api_url, "GOSSAMER_TOKEN_FILE": str(token),
           "GOSSAMER_CONFIG": str(tmp / "no-config.yaml")}
    if cp.api_url.startswith("https"):
        env["GOSSAMER_CA_FILE"] = str(cp.tls.ca_file)
    result = await asyncio.to_thread(CliRunner().invoke, main, ["check", *args],
                                     obj=Runtime(env=env))
    assert "Traceback" not in result.output, result.output
    return Checked(result.exit_code, result.output)


def ingress(zone: str, port: int) -> Any:
    return parse_document({
        "type": "ZoneIngress", "name": f"ingress-{zone}",
        "zone": zone, "networking": {"address": "127.0.0.1", "port": port,
                                     "advertisedAddress": "127.0.0.1",
                                     "advertisedPort": port}})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Federation:
    global_cp: GlobalControlPlane
    zones: dict[str, ZoneControlPlane]
    token_ids: dict[str, str]


@pytest.fixture
async def federation(planes: Planes, tmp_path: Path) -> AsyncIterator[Federation]:
    g = await planes.global_cp()
    zones, ids = {}, {}
    for name in ("zone-a", "zone-b"):
        path, ids[name] = await zone_token(g, name, tmp_path / f"{name}.token", MONTH)
        zones[name] = await planes.zone(g, name, token_file=path)
    await eventually(lambda: all(online(g, z) for z in zones), 30, "both zones online")

    async def stored_online() -> bool:  # /_check reads the insights the replica stored
        return all(z["online"] for z in (await _facts(g))["zones"])

    await eventually(stored_online, 30, "both zones online in the stored insights")
    yield Federation(g, zones, ids)


async def reports_ingresses(g: GlobalControlPlane, zones: dict[str, ZoneControlPlane],
                            expect: int) -> bool:
    """Poke every zone to report, then: has each report probed ``expect`` ingresses?"""
    for zone in zones.values():
        assert zone.health is not None
        zone.health.poke()
    facts = await _facts(g)
    return all(z["report"] is not None and len(z["report"].get("ingresses", [])) == expect
               for z in facts["zones"])


async def _facts(g: GlobalControlPlane) -> dict[str, Any]:
    async with httpx.AsyncClient(verify=str(g.tls.ca_file) if g.api_url.startswith(
            "https") else True) as http:
        resp = await http.get(f"{g.api_url}/_check",
                              headers={"Authorization": f"Bearer {g.admin_token}"})
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result


async def test_an_unreachable_ingress_fails_the_check_until_it_listens(
        federation: Federation, tmp_path: Path) -> None:
    g, zones = federation.global_cp, federation.zones
    listening = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port_a = listening.sockets[0].getsockname()[1]
    port_b = closed_port()
    await zones["zone-a"].manager.apply(ingress("zone-a", port_a))
    await zones["zone-b"].manager.apply(ingress("zone-b", port_b))
    await eventually(lambda: reports_ingresses(g, zones, 1), 30,
                     "each zone to report its probe of the other's ingress")

    checked = await run_check(g, tmp_path)
    assert checked.code == 1, checked.out
    bad = checked.line("✗ ingress of zone-b from zone-a")
    assert f"cannot connect to 127.0.0.1:{port_b}" in bad
    assert "ingress run --advertise" in checked.out  # the fix, on the line after
    assert f"127.0.0.1:{port_a} accepts TCP" in checked.line("✓ ingress of zone-a from zone-b")
    for zone in zones:
        assert "connected" in checked.line(f"✓ zone {zone} online")
        assert "valid, expires in 30d" in checked.line(f"✓ zone {zone} token")
        assert "the global's clock" in checked.line(f"✓ zone {zone} clock")
    checked.line("✓ mesh default CA backend")
    checked.line("✓ no proxy NACKing")

    # zone-b's ingress comes up: every check passes, exit status 0.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port_b))
        s.listen()

        async def b_reachable() -> bool:
            await reports_ingresses(g, zones, 1)
            probes = [p for z in (await _facts(g))["zones"] for p in z["report"]["ingresses"]]
            return all(p["reachable"] for p in probes)

        await eventually(b_reachable, 30, "zone-a to reach zone-b's ingress")
        checked = await run_check(g, tmp_path, "-o", "json")
    doc = json.loads(checked.out)
    assert checked.code == 0 and doc["ok"], checked.out
    assert all(c["ok"] for c in doc["checks"])
    listening.close()


async def test_a_revoked_zone_token_fails_the_check(federation: Federation,
                                                    tmp_path: Path) -> None:
    g, zones = federation.global_cp, federation.zones
    await eventually(lambda: reports_ingresses(g, zones, 0), 30, "both zones' reports")
    await g.zone_tokens.revoke(federation.token_ids["zone-a"])
    await eventually(lambda: not online(g, "zone-a"), 30, "zone-a cut off")

    async def stored_offline() -> bool:  # /_check reads the insights the replica stored
        facts = await _facts(g)
        return any(z["name"] == "zone-a" and not z["online"] for z in facts["zones"])

    await eventually(stored_offline, 30, "zone-a offline in the stored insights")
    checked = await run_check(g, tmp_path)
    assert checked.code == 1, checked.out
    offline = checked.line("✗ zone zone-a online")
    assert "revoked" in offline
    token = checked.line("✗ zone zone-a token")
    assert f"token {federation.token_ids['zone-a']} is revoked" in token
    assert "gossamer token zone --zone zone-a" in checked.out
    checked.line("✓ zone zone-b online")
    checked.line("✓ zone zone-b token")


async def test_an_unreachable_api_and_a_wrong_token_are_lines_not_tracebacks(
        federation: Federation, tmp_path: Path) -> None:
    g = federation.global_cp
    env = {"GOSSAMER_ADDRESS": f"http://127.0.0.1:{closed_port()}",
           "GOSSAMER_CONFIG": str(tmp_path / "none.yaml")}
    result = await asyncio.to_thread(CliRunner().invoke, main, ["check"], obj=Runtime(env=env))
    assert result.exit_code == 1
    assert result.output.startswith("✗ API reachable: cannot reach the control plane")
    assert "fix: start the control plane" in result.output

    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token")
    env = {"GOSSAMER_ADDRESS": g.api_url, "GOSSAMER_TOKEN_FILE": str(wrong),
           "GOSSAMER_CONFIG": str(tmp_path / "none.yaml")}
    if g.api_url.startswith("https"):
        env["GOSSAMER_CA_FILE"] = str(g.tls.ca_file)
    result = await asyncio.to_thread(CliRunner().invoke, main, ["check"], obj=Runtime(env=env))
    assert result.exit_code == 1, result.output
    assert "✓ API reachable" in result.output
    assert "✗ admin token:" in result.output
    assert "Traceback" not in result.output
