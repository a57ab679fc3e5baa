"""A MeshExternalService by host name through a sidecar's VIP listener (no transparent
proxy): real Envoy, curl, and a STRICT_DNS cluster that resolves the name.

The namespace of ``test_vips_dns`` (the VIP range routed to ``lo``, the sidecar's
resolver as the namespace's nameserver) with an ``/etc/netns/<ns>/hosts`` that names the
host's end of the veth ``httpbin.outside``, where a TLS-only server for that name
listens. The external service lists only the name; its TLS names nothing either, so the
SNI and the name checked are the host name's. ``curl http://httpbin.extsvc.mesh/`` from
the namespace goes through web's listener on the external service's VIP and reaches the
server with that SNI. Skipped loudly without root or namespaces.
"""

from __future__ import annotations

from pathlib import Path

from gossamer.model.labels import EXTERNAL_SERVICE_LABEL
from gossamer.model.registry import parse_document
from gossamer.model.virtualip import VirtualIPSpec
from tests.integration.agent_env import free_port
from tests.integration.test_external_service import NAME, https_server
from tests.integration.test_vips_dns import VIP_LABELS, Namespace, Zone, namespace, run, stop
from tests.waiting import eventually

__all__ = ["namespace"]  # the fixture


async def test_a_host_name_endpoint_through_the_vip_listener(tmp_path: Path,
                                                             namespace: Namespace) -> None:
    ns = namespace
    (Path("/etc/netns") / ns.name / "hosts").write_text(
        f"127.0.0.1 localhost\n{ns.host_ip} {NAME}\n")  # bound over /etc/hosts by netns exec
    zone = Zone(tmp_path / "zone", ns.host_ip, free_port())
    cp = await zone.start()
    (tmp_path / "outside").mkdir()
    try:
        with https_server(ns.host_ip, tmp_path / "outside") as (port, ca_pem, seen):
            await cp.manager.apply(parse_document({
                "type": "MeshExternalService", "name": "httpbin", "mesh": "default", "spec": {
                    "match": {"port": 80, "protocol": "http"},
                    "endpoints": [{"address": NAME, "port": port}],
                    "tls": {"enabled": True, "verification": {
                        "caCert": {"inline": ca_pem.decode()}}}}}))
            async with await zone.sidecar(tmp_path / "web", "web-1", "web", ns.ns_ip, 8080,
                                          "--dns-addr", "127.0.0.1:53", labels=VIP_LABELS,
                                          prefix=ns.exec) as web:
                def vip() -> str | None:
                    return next((r.spec.ip for r in cp.state.of_kind("VirtualIP", "default")
                                 if isinstance(r.spec, VirtualIPSpec)
                                 and r.labels.get(EXTERNAL_SERVICE_LABEL) == "httpbin"), None)

                address = await eventually(vip, 30, "the external service's VIP")

                async def answered() -> bool:
                    out = await run(*ns.exec, "curl", "-s", "-m", "2",
                                    "http://httpbin.extsvc.mesh/by-name")
                    return out == "outside"

                await eventually(answered, 60, "curl http://httpbin.extsvc.mesh/ to answer")
                assert ("/by-name", "TLSv1.3", NAME) in seen.requests
                insight = cp.ads.insights["dp:default:web-1"]
                assert f"outbound:{address}:80" in insight.config()["listeners"]
                assert insight.nacked == 0, insight.last_nack
                await stop(web)
    finally:
        await zone.stop()
