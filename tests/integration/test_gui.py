"""The GUI in a real headless browser (Debian's chromium, driven by Playwright) against a
live global with zones east and west and real sidecars: backend-1 in east behind east's
ingress, web-1 in west calling backend. Sign-in, each page showing the live state, a
policy applied with the CLI appearing without a reload, web-1's routes naming east, the
cookie's limits, sign-out, and west's own GUI showing only its own dataplanes.

Each page's screenshot is saved; with ``GOSSAMER_GUI_SCREENSHOTS=docs/gui`` they are
written there too (the README's pictures come from this test).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.ingress_env import Cluster, free_port, ingress_process, sidecar
from tests.integration.test_agent_zone import http_backend
from tests.integration.test_inspect_relay import Cli

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 90_000  # a condition on the page, polled by Playwright until this deadline
DENY_SELF = """\
type: MeshTrafficPermission
name: no-backend-to-backend
mesh: default
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
  - targetRef: {kind: MeshService, name: backend}
    default: {action: Deny}
"""
SLOW = """\
type: MeshTimeout
name: slow-backend
mesh: default
spec:
  targetRef: {kind: MeshService, name: web}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default: {connectionTimeout: 7s}
"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/install-debian-packages)")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            await browser.close()


class Shots:
    """Screenshots of each page, kept in the test's directory (and docs/gui if asked)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.publish = os.environ.get("GOSSAMER_GUI_SCREENSHOTS")

    async def take(self, page: Any, name: str) -> None:
        path = self.directory / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"{name}: an empty screenshot"
        if self.publish:
            Path(self.publish).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(self.publish) / path.name)


def _token(path: Path) -> str:
    return (path / "admin-token").read_text().strip()


async def _sign_in(page: Any, url: str, token: str) -> None:
    await page.goto(f"{url}/gui/")
    await page.fill("#token", token)
    await page.click("form.signin button[type=submit]")
    await playwright_api.expect(page.locator("header nav")).to_be_visible(timeout=WAIT_MS)


async def _open(page: Any, where: str, text: str) -> Any:
    """Follow the nav link ``where`` and wait until the page shows ``text``."""
    await page.click(f"header nav a[href='#/{where}']")
    main = page.locator(f"main[data-page={where}]")
    await playwright_api.expect(main).to_contain_text(text, timeout=WAIT_MS)
    return main


async def test_the_gui_shows_a_live_global_with_two_zones(
        cluster: Cluster, browser: Any, tmp_path: Path) -> None:
    shots = Shots(tmp_path / "shots")
    shots.directory.mkdir()
    cli = Cli(cluster.directory)
    await cli.add("global", cluster.global_cp)
    token = await cluster.zone_token("east", ["ingress"], cluster.directory / "east.token")
    egress = await cluster.zone_token("west", ["egress"], cluster.directory / "west.token")
    egress_port = free_port()
    global_url, admin = cluster.global_cp.api_url, _token(cluster.global_cp.settings.data_dir)
    async with http_backend(b"hello") as app, \
            await sidecar(cluster, cluster.east, "backend-1", "backend", app), \
            ingress_process(cluster.directory / "ingress", cluster.east, token, free_port()), \
            ingress_process(cluster.directory / "egress", cluster.west, egress, egress_port,
                            command="cli.run_egress"), \
            await sidecar(cluster, cluster.west, "web-1", "web", free_port(), free_port()):
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        expect = playwright_api.expect

        # Nothing of the mesh without signing in; a wrong token is named, not accepted.
        async with httpx.AsyncClient(base_url=global_url) as api:
            assert (await api.get("/policies/_overviews",
                                  headers={"x-gossamer-gui": "1"})).status_code == 401
        await page.goto(f"{global_url}/gui/")
        await page.fill("#token", "not-the-token")
        await page.click("form.signin button[type=submit]")
        await expect(page.locator("form.signin .error")).to_contain_text(
            "the bearer token is not valid", timeout=WAIT_MS)
        await shots.take(page, "signin")
        await _sign_in(page, global_url, admin)

        zones = await _open(page, "zones", "east")
        for zone in ("east", "west"):
            row = zones.locator("tr", has_text=zone).first
            await expect(row.locator(".badge")).to_have_text("Online", timeout=WAIT_MS)
        # east's ingress, with the service it offers, synced from east to the global.
        await expect(zones.locator("tr", has_text="east").first).to_contain_text(
            "backend", timeout=WAIT_MS)
        # west's egress, synced from west: where its sidecars dial it, for which meshes.
        await expect(zones.locator("tr", has_text="west").first.locator(".egress")
                     ).to_contain_text(f"127.0.0.1:{egress_port} meshes default",
                                       timeout=WAIT_MS)
        await shots.take(page, "zones")

        meshes = await _open(page, "meshes", "default")
        await expect(meshes).to_contain_text("builtin", timeout=WAIT_MS)
        await expect(meshes.locator("tr", has_text="default").locator(".badge")).to_have_text(
            "stable", timeout=WAIT_MS)
        await shots.take(page, "meshes")

        services = await _open(page, "services", "backend")
        await expect(services.locator("tr", has_text="backend")).to_contain_text(
            "east (1)", timeout=WAIT_MS)
        await expect(services.locator("tr", has_text="web")).to_contain_text("west (1)")
        await shots.take(page, "services")

        dataplanes = await _open(page, "dataplanes", "web-1")
        await expect(dataplanes.locator("tr", has_text="backend-1")).to_contain_text("east")
        await expect(dataplanes.locator("tr", has_text="web-1")).to_contain_text("west")
        await page.fill("main input[type=search]", "backend")
        await expect(dataplanes.locator("tbody tr")).to_have_count(1, timeout=WAIT_MS)
        await page.fill("main input[type=search]", "")
        await shots.take(page, "dataplanes")

        # A policy applied with the CLI shows up on the open page without a reload.
        policies = await _open(page, "policies", "")
        await expect(policies).not_to_contain_text("slow-backend")
        marker = await page.evaluate("document.body.dataset.updated")
        (cluster.directory / "slow.yaml").write_text(SLOW)
        (cluster.directory / "deny.yaml").write_text(DENY_SELF)
        await cli.ok("--context", "global", "apply", "-f", str(cluster.directory / "slow.yaml"))
        await cli.ok("--context", "global", "apply", "-f", str(cluster.directory / "deny.yaml"))
        row = policies.locator("tr", has_text="slow-backend")
        await expect(row).to_contain_text("MeshTimeout", timeout=WAIT_MS)
        await expect(row).to_contain_text("1 dataplane")
        assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert await page.evaluate("document.body.dataset.updated") != marker
        await shots.take(page, "policies")

        await row.locator("a").click()
        detail = page.locator("main")
        await expect(detail.locator("pre.yaml")).to_contain_text("connectionTimeout: 7s")
        await expect(detail).to_contain_text("web-1")
        await shots.take(page, "policy")

        # web-1: its matched policies, then its routes: outbound -> backend -> east.
        await page.goto(f"{global_url}/gui/#/dataplanes/default/web-1?zone=west")
        kind = detail.locator("[data-kind=MeshTimeout]")
        await expect(kind).to_contain_text("to backend", timeout=WAIT_MS)
        await expect(kind).to_contain_text("slow-backend")
        # its certificate as its Envoy holds it, relayed through west
        certificate = detail.locator("dl.pairs dt:text-is('Certificate') + dd")
        await expect(certificate).to_contain_text("valid", timeout=WAIT_MS)
        await expect(certificate).to_contain_text("expires in")
        await expect(detail.locator("dl.pairs dt:text-is('ACK / NACK') + dd")).to_have_text(
            "no NACK, as its zone reported")
        await shots.take(page, "dataplane-policies")
        await page.click("button[role=tab]:text('Routes')")
        await expect(detail.locator(".route", has_text="backend").locator(
            ".chip.zone[data-zone=east]").first).to_be_visible(timeout=WAIT_MS)
        await shots.take(page, "dataplane-routes")
        await page.click("button[role=tab]:text('Envoy config')")
        await expect(detail.locator("pre.envoy")).to_contain_text("dp:default:web-1",
                                                                  timeout=WAIT_MS)

        await page.goto(f"{global_url}/gui/#/services/default/backend")
        callers = page.locator("main tbody")

        def caller(name: str) -> Any:
            return callers.locator("tr", has=page.get_by_text(name, exact=True)).locator(
                ".badge")

        # The mesh's allow-all lets web in; the policy applied above keeps backend out.
        await expect(caller("web")).to_have_text("Allow", timeout=WAIT_MS)
        await expect(caller("backend")).to_have_text("Deny")
        await expect(callers.locator("tr", has=page.get_by_text("backend", exact=True))
                     ).to_contain_text("no-backend-to-backend")
        await shots.take(page, "service-callers")

        await _check_cookie(page, global_url)

        # West's own GUI: its web-1, online with its certificate; nothing of east's.
        zone_page = await browser.new_page(viewport={"width": 1440, "height": 900})
        await _sign_in(zone_page, cluster.west.api_url, _token(cluster.west.settings.directory))
        own = await _open(zone_page, "dataplanes", "web-1")
        await expect(own.locator("tr", has_text="web-1").locator(".badge").first).to_have_text(
            "Online", timeout=WAIT_MS)
        await expect(own).not_to_contain_text("backend-1")
        await shots.take(zone_page, "zone-dataplanes")
        # Its Zones page: itself, and east's ingress synced down with what it offers.
        here = await _open(zone_page, "zones", "Zone west")
        await expect(here.locator(".card", has_text="Other zones' ingresses")).to_contain_text(
            "backend", timeout=WAIT_MS)
        await expect(here).to_contain_text("No ingress in this zone")
        await expect(here.locator(".egress")).to_contain_text(f"127.0.0.1:{egress_port}")

        await page.click("#signout")
        await expect(page.locator("form.signin")).to_be_visible(timeout=WAIT_MS)
        await page.reload()
        await expect(page.locator("form.signin")).to_be_visible(timeout=WAIT_MS)


async def _check_cookie(page: Any, url: str) -> None:
    """HttpOnly and SameSite=Strict; a GUI read with it works, anything else is refused."""
    cookies = [c for c in await page.context.cookies() if c["name"].startswith("gossamer-gui")]
    assert len(cookies) == 1
    cookie = cookies[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""
    jar = {cookie["name"]: cookie["value"]}
    async with httpx.AsyncClient(base_url=url, cookies=jar) as api:
        assert (await api.get("/meshes", headers={"x-gossamer-gui": "1"})).status_code == 200
        assert (await api.get("/meshes")).status_code == 401  # not from the GUI
        mesh = {"type": "Mesh", "name": "evil"}
        refused = await api.put("/meshes/evil", json=mesh, headers={"x-gossamer-gui": "1"})
        assert refused.status_code == 401
