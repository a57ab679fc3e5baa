"""What the agent's SDS server serves, and the state-of-the-world protocol, without I/O.

The secrets (names from ``proxy.context``): ``IDENTITY_SECRET``, a ``tls_certificate``
with the certificate chain and the private key inline; ``TRUST_SECRET``, a
``validation_context`` whose ``trusted_ca`` is the mesh's trust bundle; and, when the
operator provides one, ``PROMETHEUS_TLS_SECRET``, the certificate of a MeshMetric
Prometheus endpoint in ``ProvidedTLS`` mode. ``secret_entries``
turns them into ``sync.messages.Entry`` values whose version is a digest of the
serialized secret, so an unchanged secret never counts as an update.

Envoy speaks SDS in one of two dialects, chosen by the ``api_type`` of the
``sds_config`` that references a secret: ``GRPC`` opens ``StreamSecrets`` (state of the
world) and ``DELTA_GRPC`` opens ``DeltaSecrets``. The server answers both. The delta
dialect runs on the shared ``sync.engine.Engine``; the state-of-the-world one is small
enough to be ``SotwState`` below:

* a request names the secrets the stream wants (Envoy opens one stream per secret);
* ``pending(desired)`` returns a response when the wanted secrets' combined version
  differs from the last one sent on the stream, else ``None``;
* an ACK changes nothing; a NACK is recorded (``last_error``) and the refused version is
  not sent again: only a new version of the secrets is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from proxy.context import IDENTITY_SECRET, PROMETHEUS_TLS_SECRET, TRUST_SECRET
from sync.messages import Entry, Payload

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def identity_secret(chain_pem: bytes, key_pem: bytes,
                    name: str = IDENTITY_SECRET) -> secret_pb2.Secret:
    return secret_pb2.Secret(name=name, tls_certificate=common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(inline_bytes=chain_pem),
        private_key=base_pb2.DataSource(inline_bytes=key_pem)))


def trust_secret(bundle_pem: bytes) -> secret_pb2.Secret:
    return secret_pb2.Secret(name=TRUST_SECRET, validation_context=(
        common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=bundle_pem))))


def entry(secret: secret_pb2.Secret) -> Entry:
    body = secret.SerializeToString(deterministic=True)
    return Entry(version=hashlib.sha256(body).hexdigest()[:16],
                 payload=Payload(SECRET_TYPE, body))


def secret_entries(chain_pem: bytes | None, key_pem: bytes | None,
                   bundle_pem: bytes | None,
                   metrics_tls: tuple[bytes, bytes] | None = None) -> dict[str, Entry]:
    """The secrets to serve; one that is not known yet is left out (Envoy waits for it).
    ``metrics_tls`` is the operator's (certificate chain, key) for MeshMetric."""
    out = {}
    if chain_pem and key_pem:
        out[IDENTITY_SECRET] = entry(identity_secret(chain_pem, key_pem))
    if bundle_pem:
        out[TRUST_SECRET] = entry(trust_secret(bundle_pem))
    if metrics_tls is not None:
        out[PROMETHEUS_TLS_SECRET] = entry(identity_secret(*metrics_tls,
                                                           name=PROMETHEUS_TLS_SECRET))
    return out


@dataclass(frozen=True)
class SotwRequest:
    """A ``DiscoveryRequest`` as far as SDS cares."""

    names: frozenset[str]
    version_info: str = ""
    response_nonce: str = ""
    error: str | None = None
    node_id: str = ""

    @classmethod
    def from_proto(cls, msg: discovery_pb2.DiscoveryRequest) -> SotwRequest:
        return cls(names=frozenset(msg.resource_names), version_info=msg.version_info,
                   response_nonce=msg.response_nonce,
                   error=((msg.error_detail.message or "refused")
                          if msg.HasField("error_detail") else None),
                   node_id=msg.node.id)


@dataclass(frozen=True)
class SotwResponse:
    version: str
    nonce: str
    resources: tuple[tuple[str, Entry], ...]

    def to_proto(self) -> discovery_pb2.DiscoveryResponse:
        return discovery_pb2.DiscoveryResponse(
            version_info=self.version, nonce=self.nonce, type_url=SECRET_TYPE,
            resources=[any_pb2.Any(type_url=e.payload.type_url, value=e.payload.value)
                       for _, e in self.resources])


class SotwState:
    """One ``StreamSecrets`` stream: what it wants and what it was last sent."""

    def __init__(self) -> None:
        self.names: frozenset[str] = frozenset()
        self.sent_version: str | None = None
        self.acked_version = ""
        self.last_error: str | None = None
        self.node_id = ""
        self._nonces = 0
        self._in_flight = ""

    def on_request(self, request: SotwRequest) -> None:
        self.node_id = request.node_id or self.node_id
        if request.names != self.names:
            self.names = request.names
            self.sent_version = None  # a new subscription is answered even if unchanged
        if request.response_nonce and request.response_nonce == self._in_flight:
            if request.error is None:
                self.acked_version = request.version_info
                self.last_error = None
            else:
                self.last_error = request.error

    def pending(self, desired: Mapping[str, Entry]) -> SotwResponse | None:
        wanted = tuple(sorted((n, desired[n]) for n in self.names if n in desired))
        if not wanted:
            return None
        version = hashlib.sha256("\n".join(f"{n}={e.version}" for n, e in wanted)
                                 .encode()).hexdigest()[:16]
        if version == self.sent_version:
            return None
        self._nonces += 1
        self._in_flight = str(self._nonces)
        self.sent_version = version
        return SotwResponse(version, self._in_flight, wanted)
