"""The zone egress with real Envoys: external services leave the zone through it.

A global and zone ``west`` in-process (west's xDS on the host's end of a veth pair), a
real ``gossamer egress run`` on the host (zone token with the ``egress`` scope, its own
certificate in mesh ``default``), and web's real sidecar inside a network namespace with
VIP listeners (the namespace of ``test_vips_dns``). An HTTPS-only server for
``httpbin.outside`` (``test_external_service.https_server``, certificate from a test CA)
listens on the host's loopback: the namespace cannot reach it at all, the egress can.
With ``routing.zoneEgress: true`` on the Mesh, ``curl http://httpbin.extsvc.mesh/`` in the
namespace:

- is answered by the server over TLS 1.3 with the external service's SNI, which only the
  egress can have originated (web cannot reach that address), and the egress's Envoy
  counts the connections to the external service's cluster and the mTLS it terminated;
- is refused once a MeshTrafficPermission targeting the MeshExternalService denies web
  (the egress's RBAC counts the denial), and answered again once it is gone;
- gets 504 from a MeshTimeout on the external service shorter than the server's delay.

The ZoneEgress is stored in west (zone filled in) and reaches the global. Skipped loudly
without root or network namespaces (the ``namespace`` fixture).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx

from authority.token_authority import TokenAuthority
from gossamer.errors import NotFound
from gossamer.model.labels import DISPLAY_NAME_LABEL, ZONE_LABEL
from gossamer.model.registry import parse_document
from gossamer.model.zoneegress import ZoneEgressSpec
from gossamer.pki.certs import new_leaf, new_root_ca
from gossamer.resources import ResourceManager
from gossamer.tokens import DATAPLANE
from proxy.names import IDENTITY_SECRET, TRUST_SECRET
from tests.cluster import start_global, start_zone
from tests.integration.agent_env import envoy_pids, free_port
from tests.integration.ingress_env import Cluster, _ready, ingress_process, sidecar, stop
from tests.integration.test_agent_zone import http_backend
from tests.integration.test_cert_insights import cli_env, gossamer
from tests.integration.test_envoy_accepts import envoy, secrets, static_bootstrap, validate
from tests.integration.test_external_service import NAME, https_server, secret, timeout
from tests.integration.test_ingress_traffic import ingress_stats
from tests.integration.test_vips_dns import DATAPLANE_YAML as VIP_DATAPLANE
from tests.integration.test_vips_dns import VIP_LABELS, Namespace, agent, namespace, run
from tests.unit.envoy_external_inputs import PG_SERVICE, httpbin
from tests.unit.envoy_scenarios import as_data
from tests.unit.test_egress_resources import ALLOW_ALL, BACKEND
from tests.unit.test_egress_resources import DENY_WEB as DENY
from tests.waiting import eventually
from zone_egress.envoy import EgressContext, EgressMesh, generate_egress

__all__ = ["envoy", "namespace", "secrets"]  # fixtures

CLUSTER = "httpbin.extsvc.default.mesh"  # the external service's cluster at the egress
RBAC = "httpbin_extsvc_default_mesh.rbac"  # its chain's RBAC stats (stat_prefix: no dots)


def external(port: int, ca_secret: str = "outside-ca") -> dict[str, Any]:
    return {
        "type": "MeshExternalService",
        "mesh": "default",
        "name": "httpbin",
        "spec": {
            "match": {"port": 80, "protocol": "http"},
            "endpoints": [{"address": "127.0.0.1", "port": port}],
            "tls": {
                "enabled": True,
                "verification": {"serverName": NAME, "caCert": {"secretRef": ca_secret}},
            },
        },
    }


DENY_WEB = {
    "type": "MeshTrafficPermission",
    "mesh": "default",
    "name": "no-web-out",
    "spec": {
        "targetRef": {"kind": "MeshExternalService", "name": "httpbin"},
        "from": [
            {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Deny"}}
        ],
    },
}


async def _apply(manager: ResourceManager, *docs: dict[str, Any]) -> None:
    for doc in docs:
        await manager.apply(parse_document(doc))


async def _curl(ns: Namespace, path: str) -> tuple[int, str]:
    out = await run(
        *ns.exec,
        "curl",
        "-s",
        "-m",
        "5",
        "-o",
        "/dev/stdout",
        "-w",
        "\n%{http_code}",
        f"http://httpbin.extsvc.mesh{path}",
    )
    body, _, code = out.rpartition("\n")
    return int(code), body


async def test_external_traffic_leaves_through_the_zone_egress(
    tmp_path: Path, namespace: Namespace
) -> None:
    ns = namespace
    glob = await start_global(tmp_path / "global")
    xds = free_port()
    west = await start_zone(
        glob,
        "west",
        tmp_path / "zone-west",
        xds_addr=f"{ns.host_ip}:{xds}",
        tls_hosts=(ns.host_ip,),
    )
    assert glob.store is not None
    at_global = ResourceManager(glob.store)
    try:
        await eventually(lambda: _ready(west), 15, "west in sync")
        mesh = await at_global.get("Mesh", "default")
        spec = mesh.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        await _apply(
            at_global,
            {
                "type": "Mesh",
                "name": "default",
                **spec,  # inline spec
                "routing": {"zoneEgress": True},
            },
        )
        token, _ = await glob.zone_tokens.issue("west", 3600, ["egress"])
        (tmp_path / "egress.token").write_text(token)
        dp_token, _ = await TokenAuthority(at_global, DATAPLANE, "default").issue("web", 3600)
        web_dir = tmp_path / "web"
        web_dir.mkdir()
        (web_dir / "token").write_text(dp_token)
        (web_dir / "dataplane.yaml").write_text(VIP_LABELS + VIP_DATAPLANE)
        egress_port, egress_admin = free_port(), free_port()
        web_args = [
            "--dataplane",
            str(web_dir / "dataplane.yaml"),
            "--cp",
            f"https://{ns.host_ip}:{xds}",
            "--token-file",
            str(web_dir / "token"),
            "--cp-ca",
            str(west.settings.directory / "tls" / "ca.pem"),
            "--admin-port",
            str(free_port()),
            "--drain-time",
            "1s",
            "--dns-addr",
            "127.0.0.1:53",
        ]
        for key, value in {
            "name": "web-1",
            "service": "web",
            "address": ns.ns_ip,
            "inbound": free_port(),
            "app": 8080,
        }.items():
            web_args += ["--dataplane-var", f"{key}={value}"]
        (tmp_path / "outside").mkdir()
        with https_server("127.0.0.1", tmp_path / "outside") as (port, ca_pem, seen):
            await _apply(at_global, secret("outside-ca", ca_pem), external(port))
            async with (
                ingress_process(
                    tmp_path / "egress",
                    west,
                    tmp_path / "egress.token",
                    egress_port,
                    "--admin-port",
                    str(egress_admin),
                    host=ns.host_ip,
                    command="cli.run_egress",
                ) as egress,
                agent(web_dir, web_args, ns.exec) as web,
            ):
                stored = await eventually(
                    lambda: _egress(west.manager), 60, "the ZoneEgress stored in west", interval=0.2
                )
                assert stored.zone == "west" and stored.meshes == ["default"]
                await eventually(
                    lambda: _synced(at_global), 30, "the ZoneEgress at the global", interval=0.2
                )
                table = await gossamer(
                    cli_env(glob.api_url, glob.settings.data_dir / "admin-token"),
                    "inspect",
                    "egresses",
                )
                row = next(line.split() for line in table.splitlines() if "west-egress" in line)
                assert row == ["west-egress", "west", f"{ns.host_ip}:{egress_port}", "default"]
                await eventually(lambda: envoy_pids(egress.work), 60, "the egress's Envoy")

                async def answered() -> bool:
                    return await _curl(ns, "/hello") == (200, "outside")

                await eventually(
                    answered, 90, "httpbin.extsvc.mesh answered through the egress", interval=0.5
                )
                assert ("/hello", "TLSv1.3", NAME) in seen.requests
                stats = await ingress_stats(egress_admin)
                assert stats[f"cluster.{CLUSTER}.upstream_cx_total"] >= 1
                assert stats[f"{RBAC}.allowed"] >= 1

                # Denied at the egress by web's verified identity.
                await _apply(at_global, DENY_WEB)

                async def refused() -> bool:
                    return (await _curl(ns, "/probe"))[0] == 503

                await eventually(refused, 60, "the Deny to reach the egress", interval=0.5)
                assert (await _curl(ns, "/denied"))[0] == 503
                assert not any(p == "/denied" for p, _, _ in seen.requests)
                stats = await ingress_stats(egress_admin)
                assert stats[f"{RBAC}.denied"] >= 1
                await at_global.delete("MeshTrafficPermission", "no-web-out", "default")
                await eventually(answered, 60, "answered again without the Deny", interval=0.5)

                # A MeshTimeout on the external service applies (at web's sidecar).
                await _apply(at_global, timeout("300ms"))

                async def timed_out() -> bool:
                    return (await _curl(ns, "/slow/2000"))[0] == 504

                await eventually(timed_out, 60, "the MeshTimeout applied", interval=0.5)
                assert (await _curl(ns, "/slow/10"))[0] == 200
                # The mesh's CA asks for renewals: the egress renews its certificate too.
                before = await _serials(egress_admin)
                assert before
                west.agents.trust.renew("default")

                async def renewed() -> bool:
                    now = await _serials(egress_admin)
                    return bool(now) and not now & before

                await eventually(renewed, 30, "the egress's new certificate", interval=0.2)
                assert (await _curl(ns, "/renewed")) == (200, "outside")

                # A server that asks for a client certificate: the egress presents the
                # one the external service names (its key a mesh Secret), so web's plain
                # HTTP arrives with that identity; without it the server refuses.
                client_ca = new_root_ca("client CA", dt.datetime.now(dt.UTC), dt.timedelta(hours=1))
                client = new_leaf(
                    client_ca,
                    "payments-client",
                    dt.datetime.now(dt.UTC),
                    dt.timedelta(hours=1),
                    server=False,
                )
                (tmp_path / "mtls").mkdir()
                with https_server("127.0.0.1", tmp_path / "mtls", client_ca.cert_pem()) as (
                    mport,
                    mca,
                    mseen,
                ):
                    await _apply(at_global, secret("mtls-ca", mca), external(mport, "mtls-ca"))

                    async def no_certificate() -> bool:
                        return (await _curl(ns, "/anonymous"))[0] == 503

                    await eventually(no_certificate, 60, "the server refusing", interval=0.5)
                    with_client = external(mport, "mtls-ca")
                    with_client["spec"]["tls"] |= {
                        "clientCert": {"secretRef": "client-cert"},
                        "clientKey": {"secretRef": "client-key"},
                    }
                    await _apply(
                        at_global,
                        secret("client-cert", client.cert_pem()),
                        secret("client-key", client.key_pem()),
                        with_client,
                    )

                    async def presented() -> bool:
                        return await _curl(ns, "/mtls") == (200, "outside")

                    await eventually(presented, 60, "the egress's client certificate", interval=0.5)
                    assert "payments-client" in mseen.clients
                    assert not any(p == "/anonymous" for p, _, _ in mseen.requests)
                assert "Traceback" not in egress.errors() + web.errors()
    finally:
        await stop(west)
        await stop(glob)


async def _synced(manager: ResourceManager) -> bool:
    """West's ZoneEgress at the global (stored under a zone-hashed name)."""
    page = await manager.list("ZoneEgress")
    return any(
        r.labels.get(DISPLAY_NAME_LABEL) == "west-egress" and r.labels.get(ZONE_LABEL) == "west"
        for r in page.items
    )


async def _egress(manager: ResourceManager) -> ZoneEgressSpec | None:
    try:
        res = await manager.get("ZoneEgress", "west-egress")
    except NotFound:
        return None
    return res.spec if isinstance(res.spec, ZoneEgressSpec) else None


async def test_cross_zone_traffic_goes_through_the_egress_with_mtls_end_to_end(
    cluster: Cluster,
) -> None:
    """``zoneEgress: {crossZone: true}``: web in west reaches backend in east through west's
    egress and east's ingress. The egress counts the connections it passed to east's
    ingress and terminated no TLS for them; backend's sidecar still sees web's own
    certificate (a Deny for web there answers 403)."""
    at_global = cluster.global_manager
    mesh = await at_global.get("Mesh", "default")
    spec = mesh.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    routing = {"zoneEgress": {"externalServices": False, "crossZone": True}}
    await _apply(at_global, {"type": "Mesh", "name": "default", **spec, "routing": routing})
    east_token = await cluster.zone_token("east", ["ingress"], cluster.directory / "i.token")
    west_token = await cluster.zone_token("west", ["egress"], cluster.directory / "e.token")
    outbound, egress_admin = free_port(), free_port()
    async with (
        http_backend(b"hello from east") as app,
        await sidecar(cluster, cluster.east, "backend-1", "backend", app),
        ingress_process(cluster.directory / "ingress", cluster.east, east_token, free_port()),
        ingress_process(
            cluster.directory / "egress",
            cluster.west,
            west_token,
            free_port(),
            admin=egress_admin,
            command="cli.run_egress",
        ) as egress,
        await sidecar(cluster, cluster.west, "web-1", "web", free_port(), outbound),
    ):

        async def status() -> int:
            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(f"http://127.0.0.1:{outbound}/")
            return response.status_code if response.text != "hello from east" else 0

        await eventually(
            lambda: _is(status(), 0), 90, "web in west -> egress -> east", interval=0.3
        )
        stats = await ingress_stats(egress_admin)
        passed = {k: v for k, v in stats.items() if k.startswith("cluster.remote")}
        assert passed.get("cluster.remote_backend.default.mesh.upstream_cx_total", 0) >= 1, passed
        # No TLS terminated at the egress for it: its listener counts no handshakes.
        assert not any(
            v for k, v in stats.items() if k.startswith("listener.") and k.endswith("ssl.handshake")
        ), stats
        await _apply(at_global, DENY_WEB_TO_BACKEND)
        await eventually(
            lambda: _is(status(), 403), 60, "backend's sidecar to deny web", interval=0.3
        )
        assert "Traceback" not in egress.errors()


DENY_WEB_TO_BACKEND = {
    "type": "MeshTrafficPermission",
    "name": "deny-web",
    "mesh": "default",
    "spec": {
        "targetRef": {"kind": "MeshService", "name": "backend"},
        "from": [
            {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Deny"}}
        ],
    },
}


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


def test_envoy_accepts_the_egress_resources(
    envoy: Path, secrets: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Every chain kind (TLS originated or not, a Deny, cross-zone passthrough) in two
    meshes: a real Envoy builds them."""
    both = EgressMesh(
        external=(httpbin(), PG_SERVICE), permissions=(ALLOW_ALL, DENY), remote=(BACKEND,)
    )
    ctx = EgressContext("west-egress", "west", "127.0.0.1", 10002, {"default": both, "m2": both})
    named = {s["name"]: s for s in secrets}
    served = [
        {**named[name], "name": f"{name}:{mesh}"}
        for mesh in ("default", "m2")
        for name in (IDENTITY_SECRET, TRUST_SECRET)
    ]
    validate(envoy, static_bootstrap(as_data(generate_egress(ctx)), served), tmp_path)


async def _serials(admin: int) -> set[str]:
    """The serial numbers of the certificates the Envoy at ``admin`` serves with."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        certs = (await client.get(f"http://127.0.0.1:{admin}/certs")).json()
    return {
        c["serial_number"]
        for entry in certs.get("certificates", [])
        for c in entry.get("cert_chain", [])
    }
