"""Zone intermediates over the sync link: the request a zone makes, the certificate it gets.

A federated zone makes its own key per mesh and publishes a ``ZoneCertificateRequest``
(named after the mesh) holding only the CSR; the global signs it with the mesh root (which
never leaves the global) and publishes a ``ZoneCertificate`` (named ``<zone>.<mesh>``)
that only that zone receives: the intermediate (path length 0) and the mesh's roots.
Both keep their fields under ``spec:`` since ``mesh`` is one of them. Both are state the
control planes write (``system``): the APIs serve them read-only, and only the zone CA,
the global's signer and the sync (through unguarded managers) store them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Name

MAX_PEM = 64 * 1024


class ZoneCertificateRequestSpec(BaseModel):
    model_config = SPEC_CONFIG

    mesh: Name
    csr: str = Field(max_length=MAX_PEM, pattern=r"^-----BEGIN CERTIFICATE REQUEST-----")


class ZoneCertificateSpec(BaseModel):
    model_config = SPEC_CONFIG

    zone: Name
    mesh: Name
    certificate: str = Field(max_length=MAX_PEM, pattern=r"^-----BEGIN CERTIFICATE-----")
    trust_bundle: str = Field(max_length=MAX_PEM, pattern=r"^-----BEGIN CERTIFICATE-----")
    # The CA certificates between the intermediate and its root (root excluded), PEM;
    # empty when the root signed the intermediate itself.
    chain: str = Field("", max_length=MAX_PEM)
    # The mesh CA that signed it: ``<backend>/<generation>`` (see MeshTrust).
    signer: str = Field("", max_length=300)


REQUEST_DESCRIPTOR = KindDescriptor(
    name="ZoneCertificateRequest",
    spec_model=ZoneCertificateRequestSpec,
    scope=Scope.GLOBAL,
    path="zone-certificate-requests",
    noun="zonecertificaterequest",
    alias="zcr",
    sync=SyncDirection.ZONE_TO_GLOBAL,
    description="a zone's CSR for its intermediate CA of one mesh",
    system=True,
)

DESCRIPTOR = KindDescriptor(
    name="ZoneCertificate",
    spec_model=ZoneCertificateSpec,
    scope=Scope.GLOBAL,
    path="zone-certificates",
    noun="zonecertificate",
    alias="zcert",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    description="a zone's intermediate CA for one mesh, signed by the mesh root",
    system=True,
)
