"""No private key leaves the global: everything it sends a zone, walked over the real sync.

A global holds meshes on each CA backend (builtin, provided, vault in intermediate mode,
vault in issue mode), dataplane tokens issued through its API in every mesh, one revoked,
and a mesh whose provided CA key an older version stored inline (zones get its Mesh
without the key).
A subscriber with a real zone token opens the zone sync (gRPC over TLS, as a zone CP
does) and collects every resource the global publishes. None may carry a private key:
no PEM ``PRIVATE KEY`` block anywhere, no Secret whose bytes load as a private key, no
Vault credential of a mesh whose vault backend is in intermediate mode. What the zones
do need still arrives: the provided CA's certificate, the issue-mode Vault token, a
``TokenTrust`` per mesh, the revocation. And a federated zone uses it: it verifies the
global's dataplane tokens, refuses a revoked one, and sends issuing back to the global.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.serialization import load_der_private_key

from authority.token_authority import TokenAuthority
from global_cp.app import GlobalControlPlane
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.pki.certs import new_root_ca
from gossamer.tokens import DATAPLANE, TokenRejected
from sync.client_state import Applied, Mirror
from sync.codec import decode, kind_type_url
from sync.stream import Heartbeats, subscribe
from sync.v1 import sync_pb2_grpc
from sync.zone_link import ADMITTED, GLOBAL_KINDS, GRPC_OPTIONS
from tests.cluster import start_global, start_zone, zone_token
from tests.waiting import eventually

NOW = dt.datetime.now(dt.UTC)
VAULT = "https://127.0.0.1:1"  # never reached: Vault is not contacted on apply


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def vault_mesh(name: str, mode: str, token_secret: str) -> dict[str, Any]:
    return {"type": "Mesh", "name": name, "mtls": {"enabledBackend": "vault-1", "backends": [
        {"name": "vault-1", "type": "vault", "conf": {
            "address": VAULT, "pki": "pki", "role": "workloads", "mode": mode,
            "auth": {"token": {"secretRef": token_secret}}}}]}}


async def populate(cp: GlobalControlPlane) -> dict[str, Any]:
    """The meshes, CA material and tokens; returns what the test needs to know."""
    files = new_root_ca("provided root", NOW, dt.timedelta(days=30))
    docs = [
        {"type": "Mesh", "name": "prov"},
        {"type": "Secret", "name": "files-cert", "mesh": "prov", "data": b64(files.cert_pem())},
        {"type": "GlobalSecret", "name": "files-key", "data": b64(files.key_pem())},
        {"type": "Mesh", "name": "vlt"},
        {"type": "Secret", "name": "vault-token", "mesh": "vlt", "data": b64(b"s.intermediate")},
        {"type": "Mesh", "name": "vis"},
        {"type": "Secret", "name": "vault-token", "mesh": "vis", "data": b64(b"s.issue")},
        {"type": "Mesh", "name": "prov", "mtls": {"enabledBackend": "files", "backends": [
            {"name": "files", "type": "provided", "conf": {
                "cert": {"secretRef": "files-cert"}, "key": {"secretRef": "files-key"}}}]}},
        vault_mesh("vlt", "intermediate", "vault-token"),
        vault_mesh("vis", "issue", "vault-token"),
    ]
    # A provided CA's key inline, as an older version stored it (the API now refuses one).
    legacy = new_root_ca("legacy root", NOW, dt.timedelta(days=30))
    assert cp.store is not None
    await cp.store.create(parse_document({"type": "Mesh", "name": "legacy", "mtls": {
        "enabledBackend": "inline", "backends": [{"name": "inline", "type": "provided", "conf": {
            "cert": {"inline": legacy.cert_pem().decode()},
            "key": {"inline": legacy.key_pem().decode()}}}]}}))
    async with httpx.AsyncClient(base_url=cp.api_url, timeout=10, headers={
            "authorization": f"Bearer {cp.admin_token}"}) as api:
        for doc in docs:
            response = await api.post("/_apply", json={"documents": [doc]})
            assert response.status_code == 200, response.text
        tokens = {}
        for mesh in ("default", "prov", "vlt", "vis"):
            response = await api.post("/tokens/dataplane", json={"mesh": mesh, "service": "web"})
            assert response.status_code == 200, response.text
            tokens[mesh] = response.json()
        revoked = tokens["default"]
        response = await api.post("/tokens/dataplane/revoke", json={
            "id": revoked["id"], "expiresAt": revoked["expiresAt"], "mesh": "default"})
        assert response.status_code == 200, response.text
    return tokens


@pytest.fixture
async def global_cp(tmp_path: Path) -> AsyncIterator[GlobalControlPlane]:
    cp = await start_global(tmp_path / "global", heartbeat=0.2, timeout=2.0)
    yield cp
    await cp.stop()


async def subscribe_as_zone(cp: GlobalControlPlane, zone: str, token: str,
                            got: dict[tuple[str, str], Resource]) -> None:
    """What a zone CP's sync client does, keeping every resource it is sent in ``got``."""
    assert cp.sync is not None
    creds = grpc.ssl_channel_credentials(cp.tls.ca_file.read_bytes())
    metadata = (("authorization", f"Bearer {token}"), ("gossamer-zone", zone))
    async with grpc.aio.secure_channel(f"127.0.0.1:{cp.sync.port}", creds,
                                       options=GRPC_OPTIONS) as channel:
        call = sync_pb2_grpc.ZoneSyncStub(channel).GlobalToZone(metadata=metadata)
        assert ADMITTED in dict(await call.initial_metadata() or ())
        mirror = Mirror([kind_type_url(k) for k in [*GLOBAL_KINDS, "ZoneIngress"]])

        async def on_applied(applied: Applied) -> None:
            for name, entry in applied.updated.items():
                got[(applied.type_url, name)] = decode(entry.payload)
            for name in applied.removed:
                got.pop((applied.type_url, name), None)

        await subscribe(mirror, call, on_applied, Heartbeats(0.2, 2.0))


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def private_material(res: Resource) -> list[str]:
    """Every way ``res`` could carry a private key, as readable findings."""
    found = []
    for text in strings({"labels": dict(res.labels), "spec": res.spec_dict()}):
        blobs = [text.encode()]
        with contextlib.suppress(binascii.Error, ValueError):
            blobs.append(base64.b64decode(text, validate=True))
        for blob in blobs:
            if b"PRIVATE KEY" in blob:
                found.append(f"{res.type} {res.mesh}/{res.name}: a PEM private key")
            try:
                load_der_private_key(blob, password=None)
                found.append(f"{res.type} {res.mesh}/{res.name}: a DER private key")
            except (ValueError, TypeError):
                pass
    return found


async def test_no_private_key_reaches_a_zone(global_cp: GlobalControlPlane,
                                             tmp_path: Path) -> None:
    await populate(global_cp)
    await zone_token(global_cp, "east", tmp_path / "east.token")
    got: dict[tuple[str, str], Resource] = {}
    sub = asyncio.create_task(subscribe_as_zone(
        global_cp, "east", (tmp_path / "east.token").read_text(), got))
    sent = {("TokenTrust", "zone"), ("Secret", "prov/files-cert"), ("Secret", "vis/vault-token"),
            ("Mesh", "vlt"), ("Mesh", "prov"), ("Mesh", "vis"), ("Mesh", "default"),
            ("Mesh", "legacy")}
    trusts = {("TokenTrust", f"dataplane.{m}") for m in ("default", "prov", "vlt", "vis")}

    def names() -> set[tuple[str, str]]:
        return {(url.rsplit("/", 1)[-1], name) for url, name in got}

    try:
        await eventually(lambda: sent <= names(), timeout=15, what="the meshes and secrets")
        findings = [f for res in got.values() for f in private_material(res)]
        assert not findings, findings
        # The legacy mesh's inline key was withheld; its public certificate was not.
        legacy = got[(kind_type_url("Mesh"), "legacy")].spec_dict()["mtls"]["backends"][0]
        assert "inline" not in legacy["conf"]["key"]
        assert "BEGIN CERTIFICATE" in legacy["conf"]["cert"]["inline"]
        assert not [r for r in got.values() if "gossamer.io/signing-key" in r.labels]
        # The Vault token of the intermediate-mode mesh stayed at the global.
        assert ("Secret", "vlt/vault-token") not in names()
        # What zones verify dataplane tokens with: public keys, and the revocation.
        await eventually(lambda: trusts <= names(), timeout=15, what="the TokenTrusts")
        await eventually(lambda: any(r.type == "TokenRevocation" for r in got.values()))
        findings = [f for res in got.values() for f in private_material(res)]
        assert not findings, findings
    finally:
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)


async def test_the_credential_follows_the_mode_both_ways(global_cp: GlobalControlPlane,
                                                         tmp_path: Path) -> None:
    """Switching the vault backend to issue mode sends the credential to the zones;
    switching back withdraws it (the zone receives a removal)."""
    await populate(global_cp)
    await zone_token(global_cp, "east", tmp_path / "east.token")
    got: dict[tuple[str, str], Resource] = {}
    sub = asyncio.create_task(subscribe_as_zone(
        global_cp, "east", (tmp_path / "east.token").read_text(), got))
    secret = (kind_type_url("Secret"), "vlt/vault-token")
    try:
        await eventually(lambda: (kind_type_url("Mesh"), "vlt") in got, timeout=15)
        assert secret not in got
        for mode, present in (("issue", True), ("intermediate", False)):
            async with httpx.AsyncClient(base_url=global_cp.api_url, timeout=10, headers={
                    "authorization": f"Bearer {global_cp.admin_token}"}) as api:
                response = await api.post("/_apply", json={"documents": [
                    vault_mesh("vlt", mode, "vault-token")]})
                assert response.status_code == 200, response.text

            def arrived(want: bool = present) -> bool:
                return (secret in got) == want

            await eventually(arrived, timeout=10)
    finally:
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)


async def test_a_federated_zone_verifies_the_globals_dataplane_tokens_and_cannot_issue(
        global_cp: GlobalControlPlane, tmp_path: Path) -> None:
    tokens = await populate(global_cp)
    zone = await start_zone(global_cp, "east", tmp_path / "zone-east", heartbeat=0.2,
                            timeout=2.0)
    try:
        verifier = TokenAuthority(zone.manager, DATAPLANE, "prov")

        async def verified() -> bool:
            claims = await verifier.verify(tokens["prov"]["token"])
            return claims.token_id == tokens["prov"]["id"]

        await eventually(verified, timeout=15)
        # The zone holds no signing key of any mesh, and made none by verifying.
        keys = (await zone.manager.list("GlobalSecret", None,
                                        {"gossamer.io/signing-key": DATAPLANE})).items
        assert not keys
        assert not (await zone.manager.list("Secret", "prov", {
            "gossamer.io/signing-key": DATAPLANE})).items

        async def revoked() -> bool:
            try:
                await TokenAuthority(zone.manager, DATAPLANE, "default").verify(
                    tokens["default"]["token"])
            except TokenRejected as exc:
                return exc.reason == "revoked"
            return False

        await eventually(revoked, timeout=15)
        async with httpx.AsyncClient(base_url=zone.api_url, timeout=10, headers={
                "authorization": f"Bearer {zone.admin_token}"}) as api:
            for path, body in (("/tokens/dataplane", {"mesh": "prov", "service": "web"}),
                               ("/tokens/dataplane/revoke", {"id": "abc", "mesh": "prov"})):
                response = await api.post(path, json=body)
                assert response.status_code == 409, response.text
                assert "issued and revoked at the global" in json.dumps(response.json())
    finally:
        await zone.stop()
