"""The GUI's HTTP side through the real API app (``build_app`` with the GUI router and
``ApiGuard``) over HTTP and TLS-terminated URLs, no browser: which paths are public, the
cookie's flags on each scheme, its limits, and every file the page loads being shipped.
"""

from __future__ import annotations

import re
from importlib import resources

import httpx

from gossamer.api.app import ApiContext, build_app
from gossamer.gui.routes import gui_router
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore

TOKEN = "the-admin-token"
GUI = {"x-gossamer-gui": "1"}


def _client(scheme: str) -> httpx.AsyncClient:
    manager = ResourceManager(MemoryStore())
    app = build_app(ApiContext(manager=manager, admin_token=TOKEN, mode="zone",
                               extra_routers=[gui_router(manager, TOKEN, "west")]))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url=f"{scheme}://cp.example")


async def test_the_page_is_public_and_its_data_is_not() -> None:
    async with _client("http") as api:
        page = await api.get("/gui/")
        assert page.status_code == 200 and "app.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert (await api.get("/gui/static/app.js")).status_code == 200
        assert (await api.get("/gui")).headers["location"] == "/gui/"
        for path in ("/policies/_overviews", "/meshes/default/services/web/_callers",
                     "/meshes"):
            assert (await api.get(path, headers=GUI)).status_code == 401, path
        assert (await api.get("/gui/static/nothing.js")).status_code == 404
        assert (await api.get("/gui/static/..%2Fsession.py")).status_code in (401, 404)
        assert (await api.post("/gui/session")).status_code == 401


async def _signed_in(api: httpx.AsyncClient) -> httpx.Response:
    answer = await api.post("/gui/session", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    return answer


async def test_sign_in_sets_a_strict_httponly_cookie_secure_over_tls() -> None:
    async with _client("http") as api:
        plain = (await _signed_in(api)).headers["set-cookie"]
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain
    assert TOKEN not in plain
    async with _client("https") as api:
        assert "; Secure" in (await _signed_in(api)).headers["set-cookie"]


async def test_the_cookie_reads_for_the_gui_only_and_sign_out_clears_it() -> None:
    async with _client("http") as api:
        await _signed_in(api)
        assert (await api.get("/meshes", headers=GUI)).status_code == 200
        overviews = await api.get("/policies/_overviews", headers=GUI)
        assert overviews.status_code == 200 and "MeshTimeout" in overviews.json()["kinds"]
        assert (await api.get("/meshes")).status_code == 401
        put = await api.put("/meshes/x", json={"type": "Mesh", "name": "x"}, headers=GUI)
        assert put.status_code == 401
        assert (await api.post("/_apply", json={"documents": []}, headers=GUI)
                ).status_code == 401
        bad = await api.get("/policies/_overviews", params={"kind": "Nope"}, headers=GUI)
        assert bad.status_code == 400 and "unknown policy kind 'Nope'" in bad.text
        out = await api.post("/gui/signout")
        assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]
        assert (await api.get("/meshes", headers=GUI)).status_code == 401


def test_every_file_the_page_loads_is_in_the_package() -> None:
    """index.html's files and every module an ES module imports exist under static/
    (what pyproject's package data ships), so no request of the page can 404."""
    static = resources.files("gossamer.gui") / "static"
    wanted = set(re.findall(r'/gui/static/([\w.-]+)', (static / "index.html").read_text()))
    seen: set[str] = set()
    while todo := wanted - seen:
        name = todo.pop()
        seen.add(name)
        assert (static / name).is_file(), name
        if name.endswith(".js"):
            wanted |= set(re.findall(r'from "\./([\w.-]+)"', (static / name).read_text()))
    assert {"app.js", "style.css", "api.js", "detail.js", "routes.js", "yaml.js"} <= seen
