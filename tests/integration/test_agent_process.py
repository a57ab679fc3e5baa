"""The whole agent process against a control plane that speaks the agent API
(``FakeZoneCp``): it runs Envoy, rotates and drains, and reports the bundle digest once
Envoy has the bundle (``test_agent_zone.py`` runs the agent against the real zone CP).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import signal
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.serialization import Encoding
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import json_format

from gossamer.pki.certs import bundle_digest
from proxy.agent.sds_state import SECRET_TYPE
from proxy.context import IDENTITY_SECRET, PROMETHEUS_TLS_SECRET, TRUST_SECRET
from proxy.envoy import LISTENER_TYPE
from sync import wire
from sync.engine import Engine
from sync.messages import Entry, Payload
from tests.integration.agent_env import (
    FakeZoneCp,
    Pki,
    agent_files,
    agent_process,
    envoy_pids,
    free_port,
    tls_listener_bootstrap,
)
from tests.waiting import eventually


async def served_secrets(sock: Path, names: tuple[str, ...] = (IDENTITY_SECRET, TRUST_SECRET)
                         ) -> dict[str, secret_pb2.Secret]:
    """What the agent's SDS serves right now, asked as Envoy would ask."""
    out = {}
    async with grpc.aio.insecure_channel(f"unix:{sock}") as channel:
        call = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).StreamSecrets()
        await call.write(discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id="test"), type_url=SECRET_TYPE,
            resource_names=list(names)))
        response = await asyncio.wait_for(call.read(), 5)
        call.cancel()
    for resource in response.resources:
        secret = secret_pb2.Secret()
        resource.Unpack(secret)
        out[secret.name] = secret
    return out


async def test_the_agent_runs_envoy_rotates_and_drains(tmp_path: Path,
                                                       zone_cp: FakeZoneCp) -> None:
    admin = free_port()
    metrics = Pki().workload()
    (tmp_path / "metrics.pem").write_bytes(metrics.cert_pem())
    (tmp_path / "metrics-key.pem").write_bytes(metrics.key_pem())
    args = [*agent_files(tmp_path, zone_cp), "--cp", zone_cp.url, "--admin-port", str(admin),
            "--drain-time", "2s", "--envoy-log-level", "info",
            "--metrics-cert-file", str(tmp_path / "metrics.pem"),
            "--metrics-key-file", str(tmp_path / "metrics-key.pem")]
    async with agent_process(tmp_path, args) as agent:
        async def node_id() -> str:
            async with httpx.AsyncClient(timeout=1.0) as client:
                info = (await client.get(f"http://127.0.0.1:{admin}/server_info")).json()
            return str(info["node"]["id"])

        assert await eventually(node_id, timeout=30, what="Envoy's admin"
                                ) == "default.backend-1"
        assert zone_cp.registrations[0]["name"] == "backend-1"
        assert zone_cp.registrations[0]["networking"]["address"] == "127.0.0.1"
        [pid] = envoy_pids(agent.work)

        bootstrap = agent.work / "envoy.yaml"
        assert bootstrap.stat().st_mode & 0o077 == 0
        doc = yaml.safe_load(bootstrap.read_text())
        assert doc["admin"]["address"]["socket_address"]["port_value"] == admin
        sock = Path(doc["static_resources"]["clusters"][1]["load_assignment"]["endpoints"][0][
            "lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"])
        assert sock.stat().st_mode & 0o077 == 0
        assert not list(agent.work.glob("*key*"))  # the private key stays in memory

        # The certificate the CP signed is what SDS serves, and renewals replace it.
        async def serves_latest() -> bool:
            secrets = await served_secrets(sock)
            chain = secrets[IDENTITY_SECRET].tls_certificate.certificate_chain.inline_bytes
            return chain == zone_cp.signed[-1].public_bytes(Encoding.PEM)

        await eventually(serves_latest, timeout=10, what="the first certificate over SDS")
        # ...and what the agent reports: the chain it serves, the bundle's digest.
        first = zone_cp.signed[0].public_bytes(Encoding.PEM)
        await eventually(lambda: first in zone_cp.reported_chains(), timeout=10,
                         what="the first certificate to be reported")
        assert zone_cp.statuses[0][1].trust_bundle_digest == bundle_digest(
            zone_cp.mesh.ca.cert_pem())
        provided = (await served_secrets(sock, (PROMETHEUS_TLS_SECRET,)))[PROMETHEUS_TLS_SECRET]
        assert provided.tls_certificate.certificate_chain.inline_bytes == metrics.cert_pem()
        await eventually(lambda: len(zone_cp.signed) >= 3, timeout=20,
                         what="two renewals of a 6 s certificate")
        await eventually(serves_latest, timeout=10, what="the renewed certificate over SDS")
        assert envoy_pids(agent.work) == [pid]
        renewed = zone_cp.signed[1].public_bytes(Encoding.PEM)
        await eventually(lambda: renewed in zone_cp.reported_chains(), timeout=10,
                         what="the renewed certificate to be reported")

        # A trust bundle pushed on the Session reaches SDS.
        bundle = zone_cp.mesh.ca.cert_pem() + Pki().ca.cert_pem()
        zone_cp.push_trust_bundle(bundle)

        async def serves_bundle() -> bool:
            secrets = await served_secrets(sock)
            return secrets[TRUST_SECRET].validation_context.trusted_ca.inline_bytes == bundle

        await eventually(serves_bundle, timeout=10, what="the new trust bundle over SDS")
        await eventually(lambda: bundle_digest(bundle) in {
            st.trust_bundle_digest for _, st in zone_cp.statuses}, timeout=10,
            what="the new bundle's digest to be reported")

        # The control plane goes away: Envoy stays; it comes back: the agent registers again.
        port = zone_cp.port
        await zone_cp.stop()
        await asyncio.sleep(0)  # let the session notice (the check below waits properly)
        await eventually(lambda: not zone_cp.live, timeout=10, what="the session to break")
        last_before_restart, signed = zone_cp.statuses[-1][1], len(zone_cp.signed)
        assert envoy_pids(agent.work) == [pid]
        await zone_cp.start(port)
        await eventually(lambda: len(zone_cp.registrations) >= 2, timeout=30,
                         what="the agent to register again")
        assert envoy_pids(agent.work) == [pid]
        # The latest status comes again right after the new registration.
        await eventually(lambda: zone_cp.reported_chains(since=2), timeout=10,
                         what="a status after registering again")
        again = next(st for n, st in zone_cp.statuses if n >= 2)
        # (or the certificate of a renewal whose status the stop cut off, or that got
        # through between the CP's return and the registration)
        latest = [c.public_bytes(Encoding.PEM) for c in zone_cp.signed[signed - 1:]]
        assert again == last_before_restart or again.certificate_chain_pem in latest

        agent.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.proc.wait(), 15) == 0, agent.errors()
        assert envoy_pids(agent.work) == []
        assert not sock.exists()
        assert "Traceback" not in agent.errors()


class AdsZoneCp(FakeZoneCp, ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """``FakeZoneCp`` plus delta ADS with one inbound TLS listener whose client CA is the
    agent's trust secret, so the agent's Envoy subscribes to the trust bundle over SDS (a
    real zone CP's listeners do the same)."""

    def __init__(self, directory: Path, sds_api_type: str = "GRPC") -> None:
        super().__init__(directory)
        # only the listener is taken: its secrets name SDS_CLUSTER, the agent's socket
        listener = tls_listener_bootstrap(free_port(), free_port(), Path("unused"),
                                          sds_api_type)["static_resources"]["listeners"][0]
        body = json_format.ParseDict(listener, listener_pb2.Listener()).SerializeToString()
        self.ads = Engine()
        self.ads.set_desired(LISTENER_TYPE, {"inbound": Entry(
            version=hashlib.sha256(body).hexdigest()[:16],
            payload=Payload(LISTENER_TYPE, body))})
        self._sids = iter(range(1, 1 << 30))

    async def start(self, port: int = 0) -> None:
        await super().start(port)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self._server)

    async def DeltaAggregatedResources(self, request_iterator: Any, context: Any) -> Any:
        await self._check_token(context)
        sid = f"envoy-{next(self._sids)}"
        self.ads.connect(sid)
        try:
            async for message in request_iterator:
                for response in self.ads.on_request(sid, wire.request_from_proto(message),
                                                    time.monotonic()):
                    yield wire.response_to_proto(response)
        finally:
            self.ads.disconnect(sid)


async def envoy_trusted_ca(admin: int) -> bytes | None:
    """The trust bundle Envoy holds (from its config dump), None before it has one."""
    async with httpx.AsyncClient(timeout=1.0) as client:
        dump = (await client.get(f"http://127.0.0.1:{admin}/config_dump",
                                 params={"resource": "dynamic_active_secrets"})).json()
    for config in dump.get("configs", []):
        if config.get("name") == TRUST_SECRET:
            inline = config["secret"]["validation_context"]["trusted_ca"]["inline_bytes"]
            return base64.b64decode(inline)
    return None


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_the_bundle_digest_is_reported_once_envoy_has_the_bundle(
        tmp_path: Path, api_type: str) -> None:
    """A pushed bundle is reported once Envoy ACKed it; a bundle Envoy refuses (a PEM that
    parses in Python, but whose CRL block Envoy cannot load) is never reported: the
    previous digest stays."""
    admin = free_port()
    cp = AdsZoneCp(tmp_path / "cp-tls", api_type)
    await cp.start()
    args = [*agent_files(tmp_path, cp), "--cp", cp.url, "--admin-port", str(admin)]
    try:
        async with agent_process(tmp_path, args) as agent:
            first = cp.mesh.ca.cert_pem()
            assert await eventually(lambda: envoy_trusted_ca(admin), timeout=60,
                                    what="Envoy to load the first bundle") == first
            assert cp.statuses[-1][1].trust_bundle_digest == bundle_digest(first)

            two_roots = first + Pki().ca.cert_pem()
            cp.push_trust_bundle(two_roots)
            await eventually(lambda: bundle_digest(two_roots) in {
                st.trust_bundle_digest for _, st in cp.statuses}, timeout=20,
                what="the two-root bundle's digest to be reported")
            # reported only after the ACK, so Envoy holds it by now
            assert await envoy_trusted_ca(admin) == two_roots

            refused = (first + Pki().ca.cert_pem()
                       + b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
            assert bundle_digest(refused) not in {bundle_digest(first),
                                                  bundle_digest(two_roots)}
            cp.push_trust_bundle(refused)
            await eventually(lambda: "Envoy refused the trust bundle" in agent.errors(),
                             timeout=20, what="the refusal to be logged")
            assert "Failed to load trusted CA certificates" in agent.errors()
            # Statuses are ordered on the Session: once the next good bundle's digest
            # arrives, any report of the refused one would have arrived before it.
            fixed = first + Pki().ca.cert_pem()
            cp.push_trust_bundle(fixed)
            await eventually(lambda: cp.statuses[-1][1].trust_bundle_digest
                             == bundle_digest(fixed), timeout=20,
                             what="the fixed bundle's digest to be reported")
            reported = [st.trust_bundle_digest for _, st in cp.statuses]
            assert bundle_digest(refused) not in reported
            assert reported.index(bundle_digest(two_roots)) < len(reported) - 1
            assert await envoy_trusted_ca(admin) == fixed
    finally:
        await cp.stop()

