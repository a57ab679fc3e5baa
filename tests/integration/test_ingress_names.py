"""An ingress advertised by a host name, reached by other zones through that name.

A global and zones east and west in-process (``tests.integration.test_ingress``), real
sidecars and a real ingress. East's ingress listens on ``0.0.0.0:PORT`` and advertises
``localhost:PORT``: west's CP resolves the name with the host's resolver
(``zone_cp.ingress_names``), web's Envoy in west gets the address in its EDS and web's
calls reach backend in east. Then what the name resolves to changes (west's resolver is
replaced by one of the test's, as a changed record would): web's Envoy follows it to the
new address, and the calls still succeed through it.
"""

from __future__ import annotations

import httpx

from tests.integration.agent_env import agent_process
from tests.integration.ingress_env import (
    Cluster,
    _cp_args,
    free_port,
    ingress_process,
    sidecar,
)
from tests.integration.test_agent_zone import DATAPLANE_YAML, OUTBOUND, http_backend
from tests.unit.test_ingress_names import Records
from tests.waiting import eventually


async def envoy_hosts(admin: int, cluster_name: str) -> set[str]:
    """The ``ADDRESS:PORT`` hosts Envoy's ``/clusters`` lists for ``cluster_name``."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        text = (await client.get(f"http://127.0.0.1:{admin}/clusters")).text
    return {line.split("::")[1] for line in text.splitlines()
            if line.startswith(f"{cluster_name}::") and line.count("::") >= 3
            and line.split("::")[1][0].isdigit()}


async def test_west_reaches_east_through_its_ingress_name_and_follows_its_records(
        cluster: Cluster) -> None:
    token = await cluster.zone_token("east", ["ingress"], cluster.directory / "east.token")
    port, outbound, admin = free_port(), free_port(), free_port()
    web_dir = cluster.directory / "web-1"
    web_dir.mkdir()
    (web_dir / "dataplane.yaml").write_text(DATAPLANE_YAML + OUTBOUND)
    web_token = await cluster.dataplane_token("web", web_dir / "token")
    web_args = ["--dataplane", str(web_dir / "dataplane.yaml"),
                "--dataplane-var", "name=web-1", "--dataplane-var", "service=web",
                "--dataplane-var", f"inbound={free_port()}",
                "--dataplane-var", f"app={free_port()}",
                "--dataplane-var", f"outbound={outbound}", *_cp_args(cluster.west),
                "--token-file", str(web_token), "--admin-port", str(admin),
                "--drain-time", "1s"]
    async with http_backend(b"hello from east") as app, \
            await sidecar(cluster, cluster.east, "backend-1", "backend", app), \
            ingress_process(cluster.directory / "ingress", cluster.east, token, port,
                            "--listen", f"0.0.0.0:{port}", "--advertise",
                            f"localhost:{port}") as ingress, \
            agent_process(web_dir, web_args):

        async def across_zones() -> bool:
            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(f"http://127.0.0.1:{outbound}/",
                                            headers={"connection": "close"})
            return response.status_code == 200 and response.text == "hello from east"

        await eventually(across_zones, timeout=90, what="web in west -> backend in east")
        names = cluster.west.parts.ingress_names
        assert "127.0.0.1" in names.addresses("localhost")
        assert f"127.0.0.1:{port}" in await envoy_hosts(admin, "backend")

        # The name's record changes: west follows it, and the calls go on through it.
        names.resolve = Records(localhost=("127.0.0.2",))
        names.interval = 0.2

        async def moved() -> bool:
            return await envoy_hosts(admin, "backend") == {f"127.0.0.2:{port}"}

        await eventually(moved, timeout=30, what="web's Envoy following the new address")
        for _ in range(5):
            assert await across_zones()
        assert "Traceback" not in ingress.errors()

