"""MeshExternalService documents: a valid one round-trips, bad ones are refused with the
exact field path and a message a person can act on (``policy_invalid_cases`` style)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gossamer.errors import InvalidResource
from gossamer.model.meshexternalservice import (
    MeshExternalServiceSpec,
    destination_key,
    name_of_key,
)
from gossamer.model.registry import parse_document, to_document
from tests.unit.ca_material import make_ca, pem

CA_PEM = pem(make_ca("outside-ca")).decode()


def _doc(spec: Any) -> dict[str, Any]:
    return {"type": "MeshExternalService", "name": "httpbin", "mesh": "default", "spec": spec}


VALID = {
    "match": {"port": 80, "protocol": "http"},
    "endpoints": [{"address": "httpbin.example.com", "port": 443}, {"address": "10.0.0.7",
                                                                     "port": 8443}],
    "tls": {"enabled": True, "version": {"min": "TLS12", "max": "TLS13"},
            "verification": {"mode": "Secured", "serverName": "httpbin.example.com",
                             "subjectAltNames": [{"type": "Prefix", "value": "httpbin."}],
                             "caCert": {"inline": CA_PEM}}},
    "zones": ["west"],
}

_ENDPOINT = "endpoints: [{address: api.example.com, port: 443}]"
_MATCH = "match: {port: 80, protocol: http}"


def _tls(tls: str) -> str:
    return f"{_MATCH}\n{_ENDPOINT}\ntls: {tls}"


# (spec as YAML, exact field path, fragment of the message)
INVALID: list[tuple[str, str, str]] = [
    (_ENDPOINT, "spec.match", "required field"),
    (f"{_MATCH}\nendpoints: []", "spec.endpoints", "at least 1 item"),
    ("match: {port: 70000}\n" + _ENDPOINT, "spec.match.port", "between 1 and 65535"),
    ("match: {port: 80, protocol: udp}\n" + _ENDPOINT, "spec.match.protocol", "Input should be"),
    (f"{_MATCH}\nendpoints: [{{address: 'not a host', port: 443}}]",
     "spec.endpoints[0].address", "an IP address or a lower-case host name"),
    (f"{_MATCH}\nendpoints: [{{address: API.example.com, port: 443}}]",
     "spec.endpoints[0].address", "lower-case host name"),
    (f"{_MATCH}\nendpoints: [{{address: api.example.com, port: 0}}]",
     "spec.endpoints[0].port", "between 1 and 65535"),
    (_tls("{version: {min: TLS12}}"), "spec.tls.version", "only with enabled: true"),
    (_tls("{verification: {mode: SkipAll}}"), "spec.tls.verification",
     "only with enabled: true"),
    (_tls("{enabled: true}"), "spec.tls.verification", "required with enabled: true"),
    (_tls("{enabled: true, verification: {mode: Secured}}"), "spec.tls.verification.caCert",
     "give caCert"),
    (_tls("{enabled: true, verification: {caCert: {inline: 'hello'}}}"),
     "spec.tls.verification.caCert.inline", "PEM certificates"),
    (_tls("{enabled: true, verification: {caCert: {}}}"), "spec.tls.verification.caCert",
     "exactly one of secretRef or inline"),
    (_tls("{enabled: true, verification: {mode: SkipCA, caCert: {secretRef: ca}}}"),
     "spec.tls.verification.caCert", "does not verify the chain"),
    (_tls("{enabled: true, verification: {mode: Skip}}"), "spec.tls.verification.mode",
     "Input should be"),
    (_tls("{enabled: true, verification: {mode: SkipAll, serverName: 'a b'}}"),
     "spec.tls.verification.serverName", "host name"),
    (_tls("{enabled: true, version: {min: TLS13, max: TLS12}, verification: {mode: SkipAll}}"),
     "spec.tls.version.min", "newer than max"),
    (_tls("{enabled: true, version: {min: TLS10}, verification: {mode: SkipAll}}"),
     "spec.tls.version.min", "Input should be"),
    (f"{_MATCH}\n{_ENDPOINT}\nzones: [West_1]", "spec.zones[0]", "lower-case letters"),
    (f"{_MATCH}\n{_ENDPOINT}\nclientCert: {{secretRef: key}}", "spec.clientCert",
     "unknown field"),
]


def test_a_valid_document_round_trips() -> None:
    res = parse_document(_doc(VALID))
    assert isinstance(res.spec, MeshExternalServiceSpec)
    assert to_document(res)["spec"] == VALID
    assert res.spec.host_names() == ["httpbin.example.com"]
    assert res.spec.allowed_in("west") and not res.spec.allowed_in("east")


def test_without_zones_every_zone_may_reach_it() -> None:
    res = parse_document(_doc(yaml.safe_load(f"{_MATCH}\n{_ENDPOINT}")))
    assert isinstance(res.spec, MeshExternalServiceSpec)
    assert res.spec.allowed_in("east") and res.spec.tls is None


@pytest.mark.parametrize(("spec", "path", "fragment"), INVALID, ids=[c[1] for c in INVALID])
def test_invalid_document_names_the_field(spec: str, path: str, fragment: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_document(_doc(yaml.safe_load(spec)))
    errors = {e.path: e.message for e in info.value.field_errors}
    assert path in errors, f"no error at {path}; got {errors}"
    assert fragment in errors[path], errors[path]


def test_destination_keys_are_apart_from_service_names() -> None:
    key = destination_key("httpbin")
    assert name_of_key(key) == "httpbin"
    assert name_of_key("httpbin") is None
    # No service can be named like a key: '@' is in no tag value.
    with pytest.raises(InvalidResource):
        parse_document({"type": "Dataplane", "name": "dp", "mesh": "default", "spec": {
            "networking": {"address": "10.0.0.1", "inbound": [
                {"port": 80, "tags": {"gossamer.io/service": key}}]}}})
