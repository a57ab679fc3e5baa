"""One live agent as the zone CP keeps it: ``AgentSession`` for a sidecar, the
``OtherSession`` shape for other kinds (``zone_cp.ingresses``), and the ``Change``
that ``AgentRegistry.on_change`` listeners hear.

A session keeps the sidecar's registered Dataplane, the token that admitted it, the
last status it reported (parsed, ``zone_cp.cert_status``), what ``SignCertificate``
last signed for it, and ``updates``: what the Session stream sends it next (bounded,
``zone_cp.mailbox``; Gossamer types, converted to protobuf by ``zone_cp.agent_service``).

A sidecar's node id is ``dp:<mesh>:<name>`` (``sidecar_node_id``): names never contain a
colon, so no two (mesh, name) pairs share one (``<mesh>.<name>`` did: mesh ``a`` with
name ``b.c`` against mesh ``a.b`` with name ``c``), and the ``dp:`` prefix keeps it apart
from an ingress's ``ingress:<name>`` even for a mesh named ``ingress``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509

from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.tokens import Claims
from zone_cp.admin_channel import AdminChannel
from zone_cp.cert_status import CertificateInfo, Health, SignedRecord, StatusReport
from zone_cp.mailbox import Mailbox

SIDECAR_NODE_PREFIX = "dp:"


def sidecar_node_id(mesh: str, name: str) -> str:
    """The node id of the sidecar ``name`` of ``mesh`` (sessions, ADS, ``inspect``)."""
    return f"{SIDECAR_NODE_PREFIX}{mesh}:{name}"


def same_document(a: Resource, b: Resource) -> bool:
    """Whether ``a`` and ``b`` are the same resource with the same labels and spec (their
    store meta aside): the registered Dataplane and the state's copy of it."""
    return a is b or (a.key == b.key and a.labels == b.labels and a.spec == b.spec)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class AgentSession:
    """One live sidecar: its Dataplane, what it reported, what was signed for it.
    ``updates`` is what the Session stream sends it next (bounded: ``Mailbox``)."""

    mesh: str
    name: str
    claims: Claims
    dataplane: Resource
    connected_at: float
    report: StatusReport | None = None
    signed: SignedRecord | None = None
    signatures: int = 0
    renewals_asked: int = 0
    updates: Mailbox = field(default_factory=Mailbox)
    # Envoy admin pages asked of the agent and its answers (``inspect``, sync.relay).
    admin: AdminChannel = field(default_factory=AdminChannel)

    @property
    def node_id(self) -> str:
        return sidecar_node_id(self.mesh, self.name)

    @property
    def certificate(self) -> CertificateInfo | None:
        """The certificate the sidecar last reported it serves."""
        return self.report.certificate if self.report else None

    @property
    def certificate_chain(self) -> Sequence[x509.Certificate]:
        """That certificate and the CAs after it, leaf first (empty before a report),
        parsed anew on each call: ask ``certificate_fingerprint`` first."""
        return self.report.certificate.chain if self.report else ()

    @property
    def certificate_fingerprint(self) -> str:
        """The SHA-256 of that certificate ("" before a report)."""
        return self.report.certificate.fingerprint if self.report else ""

    @property
    def trust_bundle_digest(self) -> str:
        """The digest of the trust bundle the sidecar serves ("" before a report)."""
        return self.report.trust_bundle_digest if self.report else ""

    def issued_at(self) -> dt.datetime | None:
        """When the reported certificate was signed, if this zone CP signed it."""
        cert = self.certificate
        if cert is not None and self.signed is not None and (
                self.signed.certificate.serial == cert.serial):
            return self.signed.signed_at
        return None

    def health(self, now: dt.datetime) -> Health | None:
        cert = self.certificate
        return None if cert is None else cert.health(now, self.issued_at())

    @property
    def spec(self) -> DataplaneSpec:
        if not isinstance(self.dataplane.spec, DataplaneSpec):
            raise TypeError("a session holds a Dataplane")
        return self.dataplane.spec


class OtherSession(Protocol):
    """A live agent of another kind than a sidecar (what the Session stream needs)."""

    kind: str
    mesh: str
    name: str
    claims: Claims
    updates: Mailbox

    @property
    def node_id(self) -> str: ...


class Change(enum.StrEnum):
    """What happened to a sidecar's session, for ``AgentRegistry.on_change`` listeners."""

    REGISTERED = "registered"
    REPORTED = "reported"
    GONE = "gone"
