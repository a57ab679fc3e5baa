"""SDS without sockets: the secrets as versioned entries and the state-of-the-world loop."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from proxy.agent.sds_state import (
    SECRET_TYPE,
    SotwRequest,
    SotwState,
    secret_entries,
)
from proxy.context import IDENTITY_SECRET, PROMETHEUS_TLS_SECRET, TRUST_SECRET

CHAIN, KEY, BUNDLE = b"chain-1", b"key-1", b"bundle-1"


def decode(resp_any: object) -> secret_pb2.Secret:
    secret = secret_pb2.Secret()
    assert resp_any.Unpack(secret)  # type: ignore[attr-defined]
    return secret


def test_entries_carry_the_secrets_inline() -> None:
    entries = secret_entries(CHAIN, KEY, BUNDLE)
    identity = secret_pb2.Secret.FromString(entries[IDENTITY_SECRET].payload.value)
    assert identity.name == IDENTITY_SECRET
    assert identity.tls_certificate.certificate_chain.inline_bytes == CHAIN
    assert identity.tls_certificate.private_key.inline_bytes == KEY
    trust = secret_pb2.Secret.FromString(entries[TRUST_SECRET].payload.value)
    assert trust.validation_context.trusted_ca.inline_bytes == BUNDLE
    assert entries[IDENTITY_SECRET].payload.type_url == SECRET_TYPE


def test_versions_change_exactly_when_the_content_does() -> None:
    a, b = secret_entries(CHAIN, KEY, BUNDLE), secret_entries(CHAIN, KEY, BUNDLE)
    assert a == b
    c = secret_entries(b"chain-2", b"key-2", BUNDLE)
    assert c[IDENTITY_SECRET].version != a[IDENTITY_SECRET].version
    assert c[TRUST_SECRET] == a[TRUST_SECRET]
    assert secret_entries(None, None, BUNDLE).keys() == {TRUST_SECRET}


def test_the_operators_metrics_certificate_is_its_own_secret() -> None:
    entries = secret_entries(CHAIN, KEY, BUNDLE, (b"metrics-chain", b"metrics-key"))
    secret = secret_pb2.Secret.FromString(entries[PROMETHEUS_TLS_SECRET].payload.value)
    assert secret.name == PROMETHEUS_TLS_SECRET
    assert secret.tls_certificate.certificate_chain.inline_bytes == b"metrics-chain"
    assert secret.tls_certificate.private_key.inline_bytes == b"metrics-key"


def request(names: set[str], version: str = "", nonce: str = "",
            error: str | None = None) -> SotwRequest:
    msg = discovery_pb2.DiscoveryRequest(resource_names=sorted(names), version_info=version,
                                         response_nonce=nonce, type_url=SECRET_TYPE,
                                         node=base_pb2.Node(id="default.backend-1"))
    if error is not None:
        msg.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return SotwRequest.from_proto(msg)


def test_a_stream_gets_what_it_asked_for_once() -> None:
    desired = secret_entries(CHAIN, KEY, BUNDLE)
    state = SotwState()
    assert state.pending(desired) is None  # nothing asked yet
    state.on_request(request({IDENTITY_SECRET}))
    first = state.pending(desired)
    assert first is not None
    proto = first.to_proto()
    assert [decode(r).name for r in proto.resources] == [IDENTITY_SECRET]
    assert proto.type_url == SECRET_TYPE and proto.nonce == first.nonce
    state.on_request(request({IDENTITY_SECRET}, first.version, first.nonce))  # ACK
    assert state.acked_version == first.version
    assert state.pending(desired) is None
    assert state.node_id == "default.backend-1"


def test_a_change_is_pushed_and_a_refused_version_is_not_resent() -> None:
    state = SotwState()
    state.on_request(request({IDENTITY_SECRET}))
    first = state.pending(secret_entries(CHAIN, KEY, BUNDLE))
    assert first is not None
    rotated = secret_entries(b"chain-2", b"key-2", BUNDLE)
    second = state.pending(rotated)
    assert second is not None and second.version != first.version
    state.on_request(request({IDENTITY_SECRET}, first.version, second.nonce, "bad key"))
    assert state.last_error == "bad key"
    assert state.acked_version == ""
    assert state.pending(rotated) is None
    third = state.pending(secret_entries(b"chain-3", b"key-3", BUNDLE))
    assert third is not None
    state.on_request(request({IDENTITY_SECRET}, third.version, third.nonce))
    assert state.last_error is None and state.acked_version == third.version


def test_unchanged_secrets_of_other_names_do_not_trigger_a_push() -> None:
    state = SotwState()
    state.on_request(request({TRUST_SECRET}))
    assert state.pending(secret_entries(CHAIN, KEY, BUNDLE)) is not None
    assert state.pending(secret_entries(b"chain-2", b"key-2", BUNDLE)) is None


def test_a_new_subscription_is_answered_and_a_stale_ack_ignored() -> None:
    desired = secret_entries(CHAIN, KEY, BUNDLE)
    state = SotwState()
    state.on_request(request({IDENTITY_SECRET}))
    first = state.pending(desired)
    assert first is not None
    state.on_request(request({IDENTITY_SECRET, TRUST_SECRET}))
    both = state.pending(desired)
    assert both is not None and [n for n, _ in both.resources] == [IDENTITY_SECRET,
                                                                    TRUST_SECRET]
    state.on_request(request({IDENTITY_SECRET, TRUST_SECRET}, first.version, first.nonce,
                             "stale"))
    assert state.last_error is None  # answers a superseded response


def test_a_secret_not_known_yet_is_waited_for() -> None:
    state = SotwState()
    state.on_request(request({IDENTITY_SECRET}))
    assert state.pending(secret_entries(None, None, BUNDLE)) is None
    assert state.pending(secret_entries(CHAIN, KEY, BUNDLE)) is not None
