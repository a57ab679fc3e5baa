"""The global CP's HTTP API over real TCP, on SQLite and PostgreSQL stores."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from global_cp.app import GlobalControlPlane
from gossamer.settings import GlobalSettings

TIMEOUT = {"type": "MeshTimeout", "name": "slow-backend", "mesh": "default",
           "spec": {"targetRef": {"kind": "Mesh"},
                    "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                            "default": {"http": {"requestTimeout": "5s"}}}]}}


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_db_url"))
    return "sqlite"


async def start_global(data_dir: Path, store: str) -> GlobalControlPlane:
    cp = GlobalControlPlane(GlobalSettings(data_dir=data_dir, api_addr="127.0.0.1:0",
                                           sync_addr="127.0.0.1:0", store=store))
    await cp.start()
    return cp


def client(cp: GlobalControlPlane, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token or cp.admin_token}"}
    return httpx.AsyncClient(base_url=cp.api_url, headers=headers, timeout=10)


@pytest.fixture
async def cp(tmp_path: Path, store_url: str) -> AsyncIterator[GlobalControlPlane]:
    plane = await start_global(tmp_path / "global", store_url)
    yield plane
    await plane.stop()


async def test_first_start_creates_default_mesh_and_token_file(cp: GlobalControlPlane) -> None:
    token_file = cp.settings.data_dir / "admin-token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert token_file.read_text().strip() == cp.admin_token
    async with client(cp) as c:
        mesh = (await c.get("/meshes/default")).json()
        assert mesh["mtls"]["enabledBackend"] == "ca-1"
        assert mesh["mtls"]["backends"][0]["type"] == "builtin"
        mtp = (await c.get("/meshes/default/meshtrafficpermissions/allow-all")).json()
        assert mtp["spec"]["from"][0]["default"]["action"] == "Allow"


async def test_token_required_but_not_for_health(cp: GlobalControlPlane) -> None:
    async with httpx.AsyncClient(base_url=cp.api_url) as anon:
        for path in ("/healthz", "/readyz", "/metrics", "/"):
            assert (await anon.get(path)).status_code == 200, path
        r = await anon.get("/meshes")
        assert r.status_code == 401
        assert r.json()["status"] == 401
        r = await anon.put("/meshes/x", json={"type": "Mesh", "name": "x"})
        assert r.status_code == 401
    async with client(cp, token="wrong") as bad:
        assert (await bad.get("/meshes")).status_code == 401
    async with client(cp) as c:
        assert (await c.get("/meshes/x")).status_code == 404  # the anonymous PUT stored nothing


async def test_put_get_update_and_stale_version(cp: GlobalControlPlane) -> None:
    async with client(cp) as c:
        r = await c.put("/meshes/default/meshtimeouts/slow-backend", json=TIMEOUT)
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 1
        got = (await c.get("/meshes/default/meshtimeouts/slow-backend")).json()
        assert got["spec"]["to"][0]["default"]["http"]["requestTimeout"] == "5s"

        changed = {**TIMEOUT, "version": 1}
        changed["spec"] = {**TIMEOUT["spec"], "to": [
            {"targetRef": {"kind": "MeshService", "name": "backend"},
             "default": {"http": {"requestTimeout": "9s"}}}]}
        r = await c.put("/meshes/default/meshtimeouts/slow-backend", json=changed)
        assert r.status_code == 200 and r.json()["version"] == 2

        stale = {**changed, "version": 1}
        stale["spec"] = {**TIMEOUT["spec"]}
        r = await c.put("/meshes/default/meshtimeouts/slow-backend", json=stale)
        assert r.status_code == 409, r.text
        assert r.json()["title"] == "conflict"
        got = (await c.get("/meshes/default/meshtimeouts/slow-backend")).json()
        assert got["version"] == 2
        assert got["spec"]["to"][0]["default"]["http"]["requestTimeout"] == "9s"

        r = await c.delete("/meshes/default/meshtimeouts/slow-backend", params={"version": 1})
        assert r.status_code == 409
        r = await c.delete("/meshes/default/meshtimeouts/slow-backend", params={"version": 2})
        assert r.status_code == 200
        assert (await c.get("/meshes/default/meshtimeouts/slow-backend")).status_code == 404


async def test_invalid_document_names_the_field(cp: GlobalControlPlane) -> None:
    bad = {**TIMEOUT, "spec": {"to": [{"targetRef": {"kind": "MeshService", "name": "b"},
                                       "default": {"http": {"requestTimeout": "5 seconds"}}}]}}
    async with client(cp) as c:
        r = await c.put("/meshes/default/meshtimeouts/slow-backend", json=bad)
        assert r.status_code == 400
        body = r.json()
        assert body["fieldErrors"] == [{"field": "spec.to[0].default.http.requestTimeout",
                                        "message": 'expected a duration like "5s"'}]
        r = await c.put("/meshes/default/meshtimeouts/other-name", json=TIMEOUT)
        assert r.status_code == 400
        assert r.json()["fieldErrors"][0]["field"] == "name"
        r = await c.put("/meshes/nope/meshtimeouts/slow-backend", json={**TIMEOUT, "mesh": "nope"})
        assert r.status_code == 400
        assert "mesh 'nope' does not exist" in r.json()["detail"]


async def test_batch_is_validated_whole(cp: GlobalControlPlane) -> None:
    good = {**TIMEOUT, "name": "first"}
    bad = {**TIMEOUT, "name": "Second_Bad"}
    async with client(cp) as c:
        r = await c.post("/_apply", json={"documents": [good, bad]})
        assert r.status_code == 400
        assert r.json()["fieldErrors"][0]["field"] == "documents[1].name"
        assert (await c.get("/meshes/default/meshtimeouts/first")).status_code == 404

        r = await c.post("/_apply", json={"documents": [good], "dryRun": True})
        assert r.json()["results"][0]["action"] == "valid"
        assert (await c.get("/meshes/default/meshtimeouts/first")).status_code == 404

        r = await c.post("/_apply", json={"documents": [good]})
        assert r.json()["results"] == [{"type": "MeshTimeout", "name": "first",
                                        "mesh": "default", "action": "created"}]
        r = await c.post("/_apply", json={"documents": [good]})
        assert r.json()["results"][0]["action"] == "unchanged"


async def test_list_pages_and_label_selector(cp: GlobalControlPlane) -> None:
    docs = [{**TIMEOUT, "name": f"t-{i:03d}", "labels": {"team": "a" if i % 3 else "b"}}
            for i in range(120)]
    async with client(cp) as c:
        assert (await c.post("/_apply", json={"documents": docs})).status_code == 200
        names: list[str] = []
        offset = None
        while True:
            params: dict[str, str | int] = {"size": 50, "labels": "team=a"}
            if offset:
                params["offset"] = offset
            page = (await c.get("/meshes/default/meshtimeouts", params=params)).json()
            names += [d["name"] for d in page["items"]]
            assert page["total"] == 80
            offset = page["next"]
            if not offset:
                break
        assert names == [f"t-{i:03d}" for i in range(120) if i % 3]
        across = (await c.get("/meshtimeouts", params={"size": 1000})).json()
        assert across["total"] == 120


async def test_restart_keeps_resources_and_token(tmp_path: Path, store_url: str) -> None:
    data_dir = tmp_path / "global"
    first = await start_global(data_dir, store_url)
    token = first.admin_token
    async with client(first) as c:
        await c.put("/meshes/default/meshtimeouts/slow-backend", json=TIMEOUT)
        await c.delete("/meshes/default/meshtrafficpermissions/allow-all")
    await first.stop()

    second = await start_global(data_dir, store_url)
    try:
        assert second.admin_token == token
        async with client(second) as c:
            got = (await c.get("/meshes/default/meshtimeouts/slow-backend")).json()
            assert got["version"] == 1
            # a deleted bootstrap resource stays deleted
            r = await c.get("/meshes/default/meshtrafficpermissions/allow-all")
            assert r.status_code == 404
    finally:
        await second.stop()


async def test_mesh_delete_cascades_policies(cp: GlobalControlPlane) -> None:
    async with client(cp) as c:
        await c.put("/meshes/default/meshtimeouts/slow-backend", json=TIMEOUT)
        assert (await c.delete("/meshes/default")).status_code == 200
        assert (await c.get("/meshtimeouts")).json()["total"] == 0
        assert (await c.get("/meshtrafficpermissions")).json()["total"] == 0


async def test_openapi_lists_every_kind(cp: GlobalControlPlane) -> None:
    from gossamer.model.registry import REGISTRY

    async with httpx.AsyncClient(base_url=cp.api_url) as anon:
        spec = (await anon.get("/openapi.json")).json()
    for desc in REGISTRY:
        base = f"/meshes/{{mesh}}/{desc.path}" if desc.mesh_scoped else f"/{desc.path}"
        assert f"{base}/{{name}}" in spec["paths"], desc.name


async def test_metrics_count_requests(cp: GlobalControlPlane) -> None:
    async with client(cp) as c:
        await c.get("/meshes")
        text = (await c.get("/metrics")).text
    assert 'gossamer_api_requests_total{method="GET",route="/meshes",status="200"}' in text


async def test_batch_names_the_document_whose_mesh_is_missing(cp: GlobalControlPlane) -> None:
    async with client(cp) as c:
        r = await c.post("/_apply", json={"documents": [TIMEOUT, {**TIMEOUT, "mesh": "nope"}]})
        assert r.status_code == 400
        assert r.json()["fieldErrors"] == [
            {"field": "documents[1].mesh",
             "message": "mesh 'nope' does not exist; create the Mesh first"}]
        assert (await c.get("/meshes/default/meshtimeouts/slow-backend")).status_code == 404
