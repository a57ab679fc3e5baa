"""An external service's client certificate: checked when applied, read from the mesh's
Secrets (the key must be the certificate's), presented by the zone egress alone, and
never part of anything a sidecar is generated from."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from gossamer.errors import InvalidResource
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.pki.certs import new_leaf, new_root_ca
from proxy.context import Service, external_sni
from proxy.envoy import generate
from tests.unit.envoy_external_inputs import HTTPBIN, external_ctx
from tests.unit.test_egress_resources import ALLOW_ALL, EGRESS
from zone_cp.external_services import external_service
from zone_cp.mesh_state import through_egress, without_client_keys
from zone_egress.envoy import EgressContext, EgressMesh, generate_egress

NOW = dt.datetime.now(dt.UTC)
CA = new_root_ca("client CA", NOW, dt.timedelta(hours=1))
CLIENT = new_leaf(CA, "payments-client", NOW, dt.timedelta(hours=1), server=False)
OTHER = new_leaf(CA, "someone-else", NOW, dt.timedelta(hours=1), server=False)


def secret(name: str, data: bytes) -> Resource:
    return parse_document({"type": "Secret", "mesh": "default", "name": name,
                           "data": base64.b64encode(data).decode()})


def doc(tls: dict[str, Any]) -> dict[str, Any]:
    return {"type": "MeshExternalService", "mesh": "default", "name": "httpbin", "spec": {
        "match": {"port": 80, "protocol": "http"},
        "endpoints": [{"address": "httpbin.example.com", "port": 443}],
        "tls": {"enabled": True, "verification": {"mode": "SkipAll"}, **tls}}}


WITH_CLIENT = {"clientCert": {"secretRef": "client-cert"},
               "clientKey": {"secretRef": "client-key"}}
SECRETS = {"client-cert": secret("client-cert", CLIENT.cert_pem() + CA.cert_pem()),
           "client-key": secret("client-key", CLIENT.key_pem()),
           "other-key": secret("other-key", OTHER.key_pem()),
           "not-a-key": secret("not-a-key", b"hello")}


def service(tls: dict[str, Any]) -> Service:
    found = external_service(parse_document(doc(tls)), SECRETS.get)
    assert found is not None
    return found


@pytest.mark.parametrize(("tls", "path", "fragment"), [
    ({"clientCert": {"secretRef": "client-cert"}}, "spec.tls.clientKey", "together"),
    ({"clientKey": {"secretRef": "client-key"}}, "spec.tls.clientCert", "together"),
    ({"clientCert": {"secretRef": "c"}, "clientKey": {"inline": "-----BEGIN"}},
     "spec.tls.clientKey.inline", ""),
    ({"clientCert": {"inline": "not PEM"}, "clientKey": {"secretRef": "k"}},
     "spec.tls.clientCert.inline", "PEM"),
])
def test_a_bad_client_certificate_is_refused_naming_the_field(tls: dict[str, Any], path: str,
                                                              fragment: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_document(doc(tls))
    errors = {e.path: e.message for e in info.value.field_errors}
    assert path in errors, errors
    assert fragment in errors[path]


def test_without_tls_a_client_certificate_is_refused() -> None:
    bad = doc(WITH_CLIENT)
    bad["spec"]["tls"] = {"enabled": False, **WITH_CLIENT}
    with pytest.raises(InvalidResource) as info:
        parse_document(bad)
    assert "spec.tls.clientCert" in {e.path for e in info.value.field_errors}


def test_the_client_certificate_and_its_key_are_read_from_the_meshs_secrets() -> None:
    ext = service(WITH_CLIENT).external
    assert ext is not None and ext.tls is not None and not ext.problem
    assert ext.tls.client_cert_pem == CLIENT.cert_pem() + CA.cert_pem()
    assert b"PRIVATE KEY" in ext.tls.client_key_pem
    assert b"PRIVATE KEY" not in repr(ext).encode()  # never in a log line


@pytest.mark.parametrize(("tls", "fragment"), [
    ({**WITH_CLIENT, "clientKey": {"secretRef": "other-key"}}, "is not the clientCert's key"),
    ({**WITH_CLIENT, "clientKey": {"secretRef": "not-a-key"}}, "no unencrypted PEM private"),
    ({**WITH_CLIENT, "clientKey": {"secretRef": "missing"}}, "'missing' does not exist"),
    ({**WITH_CLIENT, "clientCert": {"secretRef": "not-a-key"}}, "holds no PEM certificate"),
])
def test_a_client_certificate_that_cannot_be_used_is_a_problem(tls: dict[str, Any],
                                                               fragment: str) -> None:
    ext = service(tls).external
    assert ext is not None and fragment in ext.problem
    assert ext.tls is not None and not ext.tls.client_key_pem


def test_the_egress_presents_it_and_no_sidecar_ever_holds_the_key() -> None:
    svc = service(WITH_CLIENT)
    key = CLIENT.key_pem().split(b"\n")[1]  # a line of the key's base64, in any encoding
    # At the egress: the client certificate in its cluster's TLS to the outside.
    out = generate_egress(EgressContext("west-egress", "west", "0.0.0.0", 10002, {
        "default": EgressMesh(external=(svc,), permissions=(ALLOW_ALL,))}))
    upstream = tls_pb2.UpstreamTlsContext()
    out.clusters[external_sni("httpbin", "default")].transport_socket.typed_config.Unpack(
        upstream)
    (presented,) = upstream.common_tls_context.tls_certificates
    assert presented.certificate_chain.inline_bytes.startswith(CLIENT.cert_pem())
    assert b"PRIVATE KEY" in presented.private_key.inline_bytes
    # A sidecar through the egress: mesh mTLS to it, no client key anywhere.
    routed = without_client_keys(through_egress({HTTPBIN: svc}, EGRESS, "west",
                                                external=True, cross_zone=False))
    direct = without_client_keys({HTTPBIN: svc})
    for services in (routed, direct):
        ext = services[HTTPBIN].external
        assert ext is not None and ext.tls is not None and not ext.tls.client_key_pem
        resources = generate(external_ctx(service=services[HTTPBIN]))
        for group in (resources.clusters, resources.listeners, resources.routes):
            for message in group.values():
                data = message.SerializeToString()
                assert b"PRIVATE KEY" not in data and base64.b64decode(key) not in data
    # Reached directly, it has nowhere to go, and says why.
    assert "only the zone egress holds" in (direct[HTTPBIN].external.problem  # type: ignore[union-attr]
                                           or "")
    assert not routed[HTTPBIN].external.problem  # type: ignore[union-attr]
    cluster = generate(external_ctx(service=direct[HTTPBIN])).clusters[HTTPBIN]
    assert not cluster.load_assignment.endpoints or not any(
        e.lb_endpoints for e in cluster.load_assignment.endpoints)
    # The egress's own services keep the key: without_client_keys copied, never changed.
    assert svc.external is not None and svc.external.tls is not None
    assert svc.external.tls.client_key_pem
