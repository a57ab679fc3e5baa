"""MeshExternalService documents: a valid one round-trips, bad ones are refused with the
exact field path and a message a person can act on (``policy_invalid_cases`` style)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.errors import InvalidResource
from gossamer.model.meshexternalservice import (
    MeshExternalServiceSpec,
    destination_key,
    name_of_key,
)
from gossamer.model.registry import parse_document, to_document
from gossamer.policy import match_policies
from gossamer.policy.merge import conf_data
from tests import builders
from tests.unit.ca_material import make_ca, pem
from tests.unit.test_policy_kinds_invalid import _JSON, _paths, _replace

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
    (_tls("{enabled: true, verification: {mode: SkipAll, caCert: {secretRef: ca}}}"),
     "spec.tls.verification.caCert", "does not verify the chain"),
    (_tls("{enabled: true, verification: {mode: SkipCA, serverName: a.example.com}}"),
     "spec.tls.verification.mode", "SkipCA is not supported"),
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
    with pytest.raises(InvalidResource) as info:
        parse_document(builders.dataplane_doc("dp", key))
    assert "invalid value 'extsvc@httpbin'" in str(info.value.field_errors)
    assert parse_document(builders.dataplane_doc("dp", "extsvc-httpbin")).name == "dp"


def _policy(kind: str, spec: str) -> dict[str, Any]:
    return {"type": kind, "name": "p", "mesh": "default", "spec": yaml.safe_load(spec)}


EXT = "{kind: MeshExternalService, name: httpbin}"


@pytest.mark.parametrize(("kind", "spec", "path", "fragment"), [
    ("MeshTimeout", f"targetRef: {EXT}\nto: [{{targetRef: {{kind: Mesh}}, default: {{}}}}]",
     "spec.targetRef", "a destination, not a proxy"),
    ("MeshTCPRoute", f"to: [{{targetRef: {EXT}, rules: [{{default: {{backendRefs: "
                     f"[{{kind: MeshService, name: backend}}]}}}}]}}]",
     "spec.to[0].targetRef.kind", "to[].targetRef.kind must be one of"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {EXT}, rules: [{{matches: [{{path: {{type: "
                      f"PathPrefix, value: /v1}}}}], default: {{backendRefs: "
                      f"[{{kind: MeshService, name: backend}}]}}}}]}}]",
     "spec.to[0].rules[0].default.backendRefs", "sends to it alone"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {EXT}, rules: [{{matches: [{{path: {{type: "
                      f"PathPrefix, value: /v1}}}}], default: {{filters: [{{type: "
                      f"RequestMirror, requestMirror: {{backendRef: {{kind: MeshService, "
                      f"name: backend}}}}}}]}}}}]}}]",
     "spec.to[0].rules[0].default.filters[0].type", "RequestMirror is not allowed"),
    ("MeshTimeout", f"from: [{{targetRef: {EXT}, default: {{idleTimeout: 1s}}}}]",
     "spec.from[0]", "from[].targetRef.kind must be one of"),
    ("MeshTimeout", "to: [{targetRef: {kind: MeshExternalService}, default: {}}]",
     "spec.to[0].targetRef", "needs a name"),
])
def test_policies_name_it_as_a_destination_only(kind: str, spec: str, path: str,
                                                fragment: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_document(_policy(kind, spec))
    errors = {e.path: e.message for e in info.value.field_errors}
    assert path in errors, f"no error at {path}; got {errors}"
    assert fragment in errors[path], errors[path]


def test_a_timeout_on_the_external_service_applies_to_it_alone() -> None:
    timeout = parse_document(_policy("MeshTimeout", f"""
to:
  - {{targetRef: {EXT}, default: {{http: {{requestTimeout: 1s}}}}}}
  - {{targetRef: {{kind: MeshService, name: httpbin}}, default: {{idleTimeout: 7s}}}}
"""))
    retry = parse_document(_policy("MeshRetry", f"to: [{{targetRef: {EXT}, default: "
                                                "{http: {numRetries: 2}}}]"))
    dp = builders.dataplane("web-1", "web")
    key = destination_key("httpbin")
    matched = match_policies(dp, [timeout, retry], destinations={key, "httpbin"},
                             only_destinations=True)
    ext = matched.kind("MeshTimeout").outbound(key)
    svc = matched.kind("MeshTimeout").outbound("httpbin")
    assert ext is not None and conf_data(ext.conf) == {"http": {"requestTimeout": "1s"}}
    assert svc is not None and conf_data(svc.conf) == {"idleTimeout": "7s"}
    retried = matched.kind("MeshRetry").outbound(key)
    assert retried is not None and matched.kind("MeshRetry").outbound("httpbin") is None


_PATHS = _paths(VALID)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_corruption_parses_or_raises_invalid_resource(data: st.DataObject) -> None:
    """Garbage anywhere in the spec (the PEM, a port, a mode) is the caller's error with a
    field path, never a crash, and whatever parses round-trips."""
    corrupted = _replace(VALID, data.draw(st.sampled_from(_PATHS)), data.draw(_JSON))
    try:
        res = parse_document(_doc(corrupted))
    except InvalidResource as exc:
        assert exc.field_errors
    else:
        assert parse_document(to_document(res)).spec == res.spec
