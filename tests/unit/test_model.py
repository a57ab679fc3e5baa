"""The document codec and the non-policy kinds: round trips and field-path errors."""

from __future__ import annotations

from typing import Any

import pytest

from gossamer.errors import InvalidResource
from gossamer.model.registry import REGISTRY, parse_document, to_document

DOCS: list[dict[str, Any]] = [
    {"type": "Mesh", "name": "payments",
     "mtls": {"enabledBackend": "vault-1", "mode": "permissive", "backends": [
         {"name": "vault-1", "type": "vault",
          "conf": {"address": "https://vault.internal:8200", "pki": "pki-payments",
                   "role": "gossamer-zones", "auth": {"token": {"secretRef": "vault-token"}},
                   "tls": {"caCertSecretRef": "vault-ca"}}},
         {"name": "files", "type": "provided",
          "conf": {"cert": {"secretRef": "ca-cert"}, "key": {"secretRef": "ca-key"}}},
         {"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": "12h"}}}]}},
    {"type": "Zone", "name": "east", "enabled": False},
    {"type": "ZoneIngress", "name": "east-ingress", "zone": "east",
     "networking": {"address": "10.0.0.2", "port": 10001,
                    "advertisedAddress": "ingress.east.example.com", "advertisedPort": 443},
     "availableServices": [{"mesh": "default", "instances": 2,
                            "tags": {"gossamer.io/service": "backend"}}]},
    {"type": "Dataplane", "name": "backend-1", "mesh": "default",
     "labels": {"team": "payments"},
     "networking": {"address": "10.0.0.7",
                    "inbound": [{"port": 18080, "servicePort": 8080,
                                 "tags": {"gossamer.io/service": "backend",
                                          "gossamer.io/protocol": "http", "version": "v1"}}],
                    "outbound": [{"port": 20001, "tags": {"gossamer.io/service": "web"}}]}},
    {"type": "Secret", "name": "vault-token", "mesh": "default", "data": "c2VjcmV0"},
    {"type": "GlobalSecret", "name": "signing-key-1", "data": "a2V5"},
]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d["type"])
def test_round_trip(doc: dict[str, Any]) -> None:
    res = parse_document(doc)
    again = parse_document(to_document(res))
    assert again.spec == res.spec
    assert again.labels == res.labels
    # Everything the user wrote is in the output (defaults may be added).
    out = to_document(res)
    for key in doc:
        assert key in out


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "Nope", "name": "x"}, "type", "unknown type 'Nope'"),
    ({"name": "x"}, "type", "required"),
    ({"type": "Zone", "name": "East_1"}, "name", "lower-case"),
    ({"type": "Zone", "name": "a" * 254}, "name", "longer than 253"),
    ({"type": "Zone", "name": "east", "enabled": "maybe"}, "enabled", "boolean"),
    ({"type": "Zone", "name": "east", "color": "red"}, "color", "unknown field"),
    ({"type": "Zone", "name": "east", "mesh": "default"}, "mesh", "not mesh-scoped"),
    ({"type": "Mesh", "name": "m", "mtls": {"enabledBackend": "x", "backends": []}},
     "mtls", "enabledBackend 'x' is not one of the backends"),
    ({"type": "Mesh", "name": "m", "mtls": {"backends": [
        {"name": "v", "type": "vault", "conf": {"address": "https://v", "pki": "p",
                                                "role": "r", "auth": {}}}]}},
     "mtls.backends[0].conf.auth", "exactly one of token, tls or approle"),
    ({"type": "Mesh", "name": "m", "mtls": {"backends": [
        {"name": "b", "type": "builtin", "dpCert": {"rotation": {"expiration": "1 day"}}}]}},
     "mtls.backends[0].dpCert.rotation.expiration", 'expected a duration like "5s"'),
    ({"type": "Dataplane", "name": "d", "networking": {"address": "10.0.0.1", "inbound": [
        {"port": 70000, "tags": {"gossamer.io/service": "b"}}]}},
     "networking.inbound[0].port", "between 1 and 65535"),
    ({"type": "Dataplane", "name": "d", "networking": {"address": "10.0.0.1", "inbound": [
        {"port": 80, "tags": {"version": "v1"}}]}},
     "networking.inbound[0].tags", "gossamer.io/service"),
    ({"type": "Dataplane", "name": "d", "networking": {"address": "10.0.0.1", "inbound": [
        {"port": 80, "tags": {"gossamer.io/service": "b", "gossamer.io/protocol": "smtp"}}]}},
     "networking.inbound[0].tags", "must be one of"),
    ({"type": "Dataplane", "name": "d", "networking": {"address": "not an address!"}},
     "networking.address", "IP address or a hostname"),
    ({"type": "Dataplane", "name": "d", "labels": {"k": 5}, "networking": {"address": "h"}},
     "labels.k", "string"),
    ({"type": "Secret", "name": "s", "data": "not base64!"}, "data", "base64"),
    ({"type": "MeshTimeout", "name": "t", "spec": {}}, "spec", "at least one of"),
    ({"type": "MeshTimeout", "name": "t", "extra": 1,
      "spec": {"rules": [{"default": {"idleTimeout": "1s"}}]}}, "extra", "unknown field"),
    ({"type": "MeshTimeout", "name": "t", "spec": {
        "targetRef": {"kind": "MeshService"}, "rules": [{"default": {}}]}},
     "spec.targetRef", "needs a name"),
    ({"type": "MeshTimeout", "name": "t", "spec": {
        "to": [{"targetRef": {"kind": "MeshSubset", "tags": {}}, "default": {}}]}},
     "spec.to[0]", "to[].targetRef.kind must be one of"),
]


@pytest.mark.parametrize(("doc", "path", "fragment"), BAD, ids=lambda x: str(x)[:40])
def test_invalid_documents_name_the_field(doc: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_document(doc)
    matching = [e for e in info.value.field_errors if e.path == path]
    assert matching, f"no error at {path!r}: {info.value.field_errors}"
    assert any(fragment in e.message for e in matching), matching


def test_all_errors_reported_at_once() -> None:
    with pytest.raises(InvalidResource) as info:
        parse_document({"type": "Dataplane", "name": "BAD", "mesh": "Also Bad",
                        "networking": {"address": "10.0.0.1", "inbound": [{"port": 0}]}})
    paths = {e.path for e in info.value.field_errors}
    assert {"name", "mesh", "networking.inbound[0].port", "networking.inbound[0].tags"} <= paths


def test_mesh_scoped_documents_default_to_mesh_default() -> None:
    res = parse_document({"type": "MeshTimeout", "name": "t",
                          "spec": {"rules": [{"default": {"idleTimeout": "1s"}}]}})
    assert res.mesh == "default"


def test_registry_lookups() -> None:
    for key in ("MeshTimeout", "meshtimeout", "meshtimeouts", "mt", "MESHTIMEOUTS"):
        assert REGISTRY.get(key).name == "MeshTimeout"
    assert REGISTRY.get("dp").name == "Dataplane"
    with pytest.raises(InvalidResource):
        REGISTRY.get("nothing")
