"""What the agent's SDS server serves, and the state-of-the-world protocol, without I/O.

The secrets (names from ``proxy.names``): ``IDENTITY_SECRET``, a ``tls_certificate``
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
* an ACK records the versions of the secrets it answers (``acked``); a NACK is recorded
  (``last_error``, ``refused``) and the refused version is not sent again: only a new
  version of the secrets is.

Whether Envoy *has* the trust bundle (what the agent reports during a CA rotation) is
``trust_ack``: from what each open stream that subscribes to ``TRUST_SECRET`` ACKed or
refused (a ``StreamView`` per stream, from ``SotwState.view`` or the delta engine), the
current version is ``APPLIED`` (every such stream ACKed it), ``PENDING``, ``REFUSED`` (a
stream NACKed it) or ``UNWATCHED`` (no stream wants it: Envoy has not asked yet).
``digest_to_report`` turns that into the bundle digest the agent reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from proxy.names import IDENTITY_SECRET, PROMETHEUS_TLS_SECRET, TRUST_SECRET
from sync.messages import WILDCARD, Entry, Payload, Request

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
        self.acked: dict[str, str] = {}  # secret name -> entry version, as last ACKed
        self.refused: dict[str, str] = {}  # ... as last NACKed, until a later ACK
        self.last_error: str | None = None
        self.node_id = ""
        self._nonces = 0
        self._in_flight = ""
        self._in_flight_versions: dict[str, str] = {}

    def on_request(self, request: SotwRequest) -> None:
        self.node_id = request.node_id or self.node_id
        if request.names != self.names:
            self.names = request.names
            self.sent_version = None  # a new subscription is answered even if unchanged
        if request.response_nonce and request.response_nonce == self._in_flight:
            if request.error is None:
                self.acked_version = request.version_info
                # state of the world: the response carried every secret Envoy now holds
                self.acked = dict(self._in_flight_versions)
                self.refused = {}
                self.last_error = None
            else:
                self.refused = dict(self._in_flight_versions)
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
        self._in_flight_versions = {n: e.version for n, e in wanted}
        return SotwResponse(version, self._in_flight, wanted)

    def view(self, name: str) -> StreamView | None:
        """What this stream holds of secret ``name`` (None: it does not subscribe)."""
        if name not in self.names:
            return None
        return StreamView(self.acked.get(name), self.refused.get(name), self.last_error)


@dataclass
class DeltaWants:
    """Which secrets one ``DeltaSecrets`` stream subscribes to, from its requests.

    The engine keeps the same for its own use and does not expose it; this follows the
    same rules (``sync.subscription.TypeState``): a first request that names nothing is a
    wildcard subscription."""

    started: bool = False
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    last_error: str | None = None

    def on_request(self, request: Request) -> None:
        if request.type_url != SECRET_TYPE:
            return
        if not self.started:
            self.started = True
            self.wildcard = not request.subscribe
        self.wildcard = (self.wildcard or WILDCARD in request.subscribe) \
            and WILDCARD not in request.unsubscribe
        self.names |= request.subscribe - {WILDCARD}
        self.names -= request.unsubscribe
        if request.response_nonce:
            self.last_error = request.error.message if request.error else None

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


@dataclass(frozen=True)
class StreamView:
    """What one stream that subscribes to a secret holds of it: the version it ACKed
    (None: none yet), the version it refused (None: none since its last ACK), and why."""

    acked: str | None
    refused: str | None = None
    error: str | None = None


class TrustPhase(Enum):
    UNWATCHED = "no Envoy stream subscribes to the trust bundle"
    PENDING = "not yet ACKed by every Envoy stream"
    APPLIED = "ACKed by every Envoy stream"
    REFUSED = "refused by Envoy"


@dataclass(frozen=True)
class TrustAck:
    """Where the current version of the trust secret stands with Envoy."""

    phase: TrustPhase
    version: str | None  # the entry version this is about (None: nothing served yet)
    error: str | None = None  # Envoy's reason, when REFUSED


def trust_ack(version: str | None, views: Iterable[StreamView],
              refused: TrustAck | None = None) -> TrustAck:
    """How the streams that subscribe to the trust secret stand on its ``version``.

    ``refused`` is an earlier REFUSED verdict: with no stream open (Envoy restarting), a
    version Envoy refused stays refused rather than counting as unwatched.
    """
    views = list(views)
    bad = next((v for v in views if version is not None and v.refused == version), None)
    if bad is not None:
        return TrustAck(TrustPhase.REFUSED, version, bad.error or "refused")
    if not views:
        if refused is not None and refused.version == version:
            return refused
        return TrustAck(TrustPhase.UNWATCHED, version)
    if version is not None and all(v.acked == version for v in views):
        return TrustAck(TrustPhase.APPLIED, version)
    return TrustAck(TrustPhase.PENDING, version)


def digest_to_report(ack: TrustAck, served: str, reported: str | None) -> str:
    """The bundle digest the agent reports: ``served`` (the digest of the bundle handed
    to SDS) once Envoy ACKed it or while no Envoy stream wants it (the first report, before
    Envoy runs); otherwise ``reported``, the one Envoy still has (``served`` if nothing
    was reported yet)."""
    if ack.phase in (TrustPhase.APPLIED, TrustPhase.UNWATCHED) or reported is None:
        return served
    return reported
