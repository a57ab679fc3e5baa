"""Certificate insights and the registry API the mesh CA controller drives, with real parts.

A zone CP in-process (standalone, SQLite) runs ``web-1`` calling ``backend-1``: real
``gossamer proxy run`` agents with real Envoys (``tests.dataplane_env``). The tests check
that each agent reports the certificate and trust bundle it serves; that the dataplane
overview, the zone's ``/metrics`` and ``gossamer inspect certificates`` (the real console
script) show them; that ``renew`` makes exactly the selected sidecar re-issue, once for
several requests in a row; that ``set_trust_bundle`` reaches every sidecar (which then
reports the new digest) while traffic keeps flowing over the connections it had; and that
a status an agent garbles is dropped without ending its stream. Against a global with a
federated zone, ``inspect certificates`` lists the zone's intermediate CA.

The zone's own CA controller may push its mesh bundle again after a test pushes another
one, so what the sidecars reported is followed through ``on_change`` (every report is
kept), not read once from the session at the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from authority.token_authority import TokenAuthority
from gossamer.model.zonecertificate import ZoneCertificateSpec
from gossamer.pki.certs import bundle_digest, new_csr, new_key, new_leaf, new_root_ca
from gossamer.pki.names import zone_certificate_name
from gossamer.tokens import DATAPLANE
from proxy.agent.rotation import RENEW_SPREAD
from sync.v1 import agent_pb2, agent_pb2_grpc
from tests.cluster import sample, scrape, start_global, start_zone
from tests.dataplane_apps import HttpApp, listen_port, requests
from tests.dataplane_env import DataplaneEnv, Member, Sidecar
from tests.waiting import eventually
from zone_cp.agent_session import AgentSession, Change
from zone_cp.app import ZoneControlPlane
from zone_cp.ca import workload_uris
from zone_cp.cert_status import MAX_CHAIN_PEM

pytestmark = pytest.mark.asyncio(loop_scope="module")

MESH = "default"
GOSSAMER = Path(sys.executable).parent / "gossamer"
EXPIRY = "gossamer_dataplane_certificate_expiry_timestamp_seconds"


@dataclass(frozen=True)
class Seen:
    change: Change
    name: str
    serial: str
    digest: str


@dataclass
class Lab:
    env: DataplaneEnv
    web: Sidecar
    backend: Sidecar
    outbound: int  # web's outbound port for backend
    seen: list[Seen] = field(default_factory=list)

    @property
    def cp(self) -> ZoneControlPlane:
        return self.env.cp

    def session(self, name: str) -> AgentSession:
        return self.cp.agents.sessions[f"dp:{MESH}:{name}"]

    def serial(self, name: str) -> str:
        cert = self.session(name).certificate
        assert cert is not None, f"{name} has not reported a certificate"
        return cert.serial

    def cli_env(self) -> dict[str, str]:
        return cli_env(self.cp.api_url, self.env.zone.directory / "admin-token")


def cli_env(url: str, token_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSAMER_")}
    return {**env, "GOSSAMER_CONFIG": str(token_file.parent / "no-config.yaml"),
            "GOSSAMER_ADDRESS": url, "GOSSAMER_TOKEN_FILE": str(token_file)}


async def gossamer(env: dict[str, str], *args: str) -> str:
    """The real console script, without blocking the loop the control planes run on."""
    proc = await asyncio.create_subprocess_exec(
        str(GOSSAMER), *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    directory = tmp_path_factory.mktemp("cert-insights")
    apps = {name: HttpApp(name).start() for name in ("web-1", "backend-1")}
    outbound = listen_port()
    try:
        async with DataplaneEnv(directory) as env:
            web, backend = await env.start(
                Member("web-1", "web", apps["web-1"].port, outbounds={"backend": outbound}),
                Member("backend-1", "backend", apps["backend-1"].port))
            lab = Lab(env, web, backend, outbound)

            def record(change: Change, session: AgentSession) -> None:
                cert = session.certificate
                lab.seen.append(Seen(change, session.name, cert.serial if cert else "",
                                     session.trust_bundle_digest))

            env.cp.agents.on_change(record)
            await eventually(lambda: all(lab.session(n).report for n in ("web-1", "backend-1")),
                             timeout=30, what="both sidecars to report their status")
            yield lab
    finally:
        for app in apps.values():
            app.stop()


async def current_bundle(lab: Lab) -> bytes:
    """What the zone hands sidecars now: the bundle set on the registry, or its CA's."""
    held = lab.cp.agents.trust.trust_bundle(MESH)
    if held is not None:
        return held[0]
    signed = await lab.cp.ca.sign(MESH, workload_uris(MESH, "web"), new_csr(new_key(), "probe"))
    return signed.trust_bundle_pem


async def envoy_serials(sidecar: Sidecar) -> set[int]:
    return {int(s, 16) for s in await sidecar.certificate_serials()}


async def test_each_sidecar_reports_what_its_envoy_serves(lab: Lab) -> None:
    digest = bundle_digest(await current_bundle(lab))
    for sidecar in (lab.web, lab.backend):
        session = lab.session(sidecar.name)
        assert session.report is not None and session.signed is not None
        assert session.report.certificate.serial == session.signed.certificate.serial
        assert session.trust_bundle_digest == digest
        assert f"spiffe://{MESH}/{sidecar.member.service}" in session.report.certificate.uris
        await eventually(_holds(sidecar, int(lab.serial(sidecar.name), 16)), timeout=10,
                         what=f"{sidecar.name}'s Envoy to hold the reported certificate")


def _holds(sidecar: Sidecar, serial: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return serial in await envoy_serials(sidecar)
    return check


async def test_the_overview_and_metrics_show_the_certificate(lab: Lab) -> None:
    session = lab.session("backend-1")
    cert = session.certificate
    assert cert is not None
    headers = {"Authorization": f"Bearer {lab.cp.admin_token}"}
    async with httpx.AsyncClient(base_url=lab.cp.api_url, headers=headers) as client:
        one = (await client.get(f"/meshes/{MESH}/dataplanes/backend-1/_overview")).json()
        every = (await client.get("/dataplanes/_overviews")).json()
    shown = one["certificate"]
    assert shown["serial"] == cert.serial and shown["issuer"] == cert.issuer
    assert dt.datetime.fromisoformat(shown["notAfter"]) == cert.not_after
    assert dt.datetime.fromisoformat(shown["notBefore"]) == cert.not_before
    assert 0 < shown["expiresInSeconds"] <= (cert.not_after - cert.not_before).total_seconds()
    assert shown["uris"] == list(cert.uris)
    assert shown["trustBundleDigest"] == session.trust_bundle_digest
    assert shown["health"] == "valid"
    by_name = {i["name"]: i["certificate"] for i in every["items"]}
    assert by_name["web-1"]["serial"] == lab.serial("web-1")

    samples = await scrape(lab.cp.api_url)
    assert sample(samples, EXPIRY, mesh=MESH, dataplane="backend-1") == (
        cert.not_after.timestamp())
    assert (EXPIRY, frozenset({("mesh", MESH), ("dataplane", "web-1")})) in samples
    for name in ("gossamer_dataplane_certificates_expiring",
                 "gossamer_dataplane_certificates_expired"):
        assert (name, frozenset({("mesh", MESH)})) in samples
        assert sample(samples, name, mesh=MESH) == 0


async def test_inspect_certificates_against_the_zone(lab: Lab) -> None:
    table = await gossamer(lab.cli_env(), "inspect", "certificates")
    rows = {line.split()[1]: line.split() for line in table.splitlines()[1:]}
    assert table.splitlines()[0].split() == ["MESH", "DATAPLANE", "SERIAL", "ISSUER",
                                             "NOT-AFTER", "EXPIRES-IN"]
    assert set(rows) == {"web-1", "backend-1"}
    for name, row in rows.items():
        cert = lab.session(name).certificate
        assert cert is not None
        assert row[0] == MESH and row[2] == cert.serial
        assert row[-2] == cert.not_after.isoformat() and row[-1].endswith("h")
    as_json = json.loads(await gossamer(lab.cli_env(), "inspect", "certificates", "-o",
                                        "json"))
    assert {(i["dataplane"], i["serial"]) for i in as_json["items"]} == {
        (n, lab.serial(n)) for n in rows}
    dataplanes = await gossamer(lab.cli_env(), "inspect", "dataplanes")
    assert lab.serial("backend-1") in dataplanes and "CERT-SERIAL" in dataplanes


async def test_renew_reissues_the_selected_sidecar_once(lab: Lab) -> None:
    backend = lab.session("backend-1")
    before, signatures = lab.serial("backend-1"), backend.signatures
    web_serial = lab.serial("web-1")
    for _ in range(3):
        assert lab.cp.agents.trust.renew(MESH, lambda s: s.name == "backend-1") == 1

    renewed = await eventually(
        lambda: [s for s in lab.seen if s.name == "backend-1" and s.change == Change.REPORTED
                 and s.serial not in ("", before)],
        timeout=30, what="backend-1 to report a new certificate")
    new = renewed[0].serial
    assert backend.signed is not None and backend.signed.certificate.serial == new
    await eventually(_holds(lab.backend, int(new, 16)), timeout=10,
                     what="backend-1's Envoy to serve the new certificate")
    # Three requests in a row coalesce into one renewal. The agent spreads a requested
    # renewal over up to RENEW_SPREAD seconds: past that (with a margin for the signing
    # round trip) a second renewal would have shown.
    await asyncio.sleep(RENEW_SPREAD + 3)
    assert backend.signatures == signatures + 1
    assert lab.serial("backend-1") == new and lab.serial("web-1") == web_serial
    assert [r.status for r in await requests(lab.outbound, count=3)] == [200] * 3


async def test_a_trust_bundle_reaches_every_sidecar_without_dropping_connections(
        lab: Lab) -> None:
    extra = new_root_ca("next root", dt.datetime.now(dt.UTC), dt.timedelta(days=30))
    bundle = await current_bundle(lab) + extra.cert_pem()
    digest = bundle_digest(bundle)
    async with httpx.AsyncClient(timeout=5.0) as client:
        url = f"http://127.0.0.1:{lab.outbound}/"
        assert (await client.get(url)).status_code == 200
        opened = await lab.web.stat("cluster.backend.upstream_cx_total")
        assert opened >= 1

        lab.cp.agents.trust.set_trust_bundle(MESH, bundle)
        await eventually(lambda: {s.name for s in lab.seen if s.digest == digest}
                         == {"web-1", "backend-1"}, timeout=30,
                         what="both sidecars to report the new bundle")
        for _ in range(5):
            assert (await client.get(url)).status_code == 200
        # The mTLS connection web's Envoy had to backend's carried on: none was closed
        # and none had to be opened.
        assert await lab.web.stat("cluster.backend.upstream_cx_total") == opened
        assert await lab.web.stat("cluster.backend.upstream_cx_destroy") == 0


async def test_a_bad_status_is_dropped_and_the_stream_goes_on(
        lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    token, _ = await TokenAuthority(lab.cp.manager, DATAPLANE, MESH).issue("probe", 600)
    doc = {"type": "Dataplane", "mesh": MESH, "name": "probe-1", "networking": {
        "address": "127.0.0.1", "inbound": [{"port": listen_port(), "servicePort": 1,
                                             "tags": {"gossamer.io/service": "probe"}}]}}
    root = new_root_ca("probe root", dt.datetime.now(dt.UTC), dt.timedelta(days=1))
    good = new_leaf(root, "probe-1", dt.datetime.now(dt.UTC), dt.timedelta(hours=1))
    statuses = [b"x" * (MAX_CHAIN_PEM + 1), good.cert_pem() * 9, b"-----BEGIN CERTIFICATE"
                b"-----\ngarbage\n-----END CERTIFICATE-----\n", good.cert_pem()]
    credentials = grpc.ssl_channel_credentials(lab.env.zone.ca.read_bytes())
    async with grpc.aio.secure_channel(f"127.0.0.1:{lab.env.zone.xds_port}",
                                       credentials) as channel:
        call = agent_pb2_grpc.AgentStub(channel).Session(
            metadata=(("authorization", f"Bearer {token}"),))
        await call.write(agent_pb2.AgentMessage(register_dataplane_json=json.dumps(doc)))
        first = await asyncio.wait_for(call.read(), 10)
        assert first.WhichOneof("message") == "registered"
        session = lab.session("probe-1")
        with caplog.at_level(logging.WARNING, logger="zone_cp.agents"):
            for chain in statuses:
                await call.write(agent_pb2.AgentMessage(status=agent_pb2.AgentStatus(
                    certificate_chain_pem=chain, trust_bundle_digest="")))
            await eventually(lambda: session.certificate is not None, timeout=10,
                             what="the good status to be recorded")
        assert session.certificate is not None
        assert session.certificate.serial == format(good.cert.serial_number, "x")
        assert session.certificate.chain[0].public_bytes(Encoding.PEM) == good.cert_pem()
        ignored = [r for r in caplog.records if "status that is ignored" in r.getMessage()]
        assert len(ignored) == 3, [r.getMessage() for r in ignored]
        # Still the same live session: the stream was not ended by what it carried.
        assert lab.session("probe-1") is session
        assert (await asyncio.wait_for(call.read(), 10)).WhichOneof("message") in (
            "heartbeat", "trust_bundle", "dns_table")
        call.cancel()
    await eventually(lambda: f"dp:{MESH}:probe-1" not in lab.cp.agents.sessions, timeout=10,
                     what="the probe's session to end")


async def test_inspect_certificates_against_the_global_lists_zone_intermediates(
        tmp_path: Path) -> None:
    global_cp = await start_global(tmp_path / "global")
    try:
        zone = await start_zone(global_cp, "west", tmp_path / "west")
        try:
            async def intermediate() -> ZoneCertificateSpec | None:
                async with httpx.AsyncClient(base_url=global_cp.api_url, headers={
                        "Authorization": f"Bearer {global_cp.admin_token}"}) as client:
                    answer = await client.get(
                        f"/zone-certificates/{zone_certificate_name('west', MESH)}")
                if answer.status_code != 200:
                    return None
                return ZoneCertificateSpec.model_validate(answer.json()["spec"])

            spec = await eventually(intermediate, timeout=30,
                                    what="the global to sign west's intermediate")
            env = cli_env(global_cp.api_url, tmp_path / "global" / "admin-token")
            table = (await gossamer(env, "inspect", "certificates")).splitlines()
            assert table[0].split() == ["ZONE", "MESH", "SERIAL", "ISSUER", "NOT-AFTER",
                                        "EXPIRES-IN", "SIGNER"]
            [row] = [line.split() for line in table[1:] if line.startswith("west ")]
            as_json = json.loads(await gossamer(env, "inspect", "certificates", "-o", "json"))
            [item] = [i for i in as_json["items"] if i["zone"] == "west"]
            cert = x509.load_pem_x509_certificate(spec.certificate.encode())
            assert item["serial"] == format(cert.serial_number, "x") == row[2]
            assert item["issuer"] == cert.issuer.rfc4514_string()
            assert item["mesh"] == MESH == row[1]
            assert item["signer"] == spec.signer and row[-1] == (spec.signer or "-")
            assert dt.datetime.fromisoformat(item["notAfter"]) == cert.not_valid_after_utc
            assert item["error"] is None

            async with httpx.AsyncClient(base_url=global_cp.api_url) as client:
                assert (await client.get("/certificates/_overviews")).status_code == 401
            # The zone, with no sidecar: the header and nothing else.
            zone_env = cli_env(zone.api_url, tmp_path / "west" / "admin-token")
            assert (await gossamer(zone_env, "inspect", "certificates")).split() == [
                "MESH", "DATAPLANE", "SERIAL", "ISSUER", "NOT-AFTER", "EXPIRES-IN"]
        finally:
            await zone.stop()
    finally:
        await global_cp.stop()
