"""A mesh's MeshExternalServices as the destinations its sidecars reach (pure, no I/O).

``MeshState`` keeps them among the mesh's services, under their keys
``extsvc@<name>`` (``gossamer.model.meshexternalservice.destination_key``), so that what
follows a service follows them too: the VIP allocator gives each one a VIP, the DNS table
a name (``zone_cp.mesh_dns``), the fleet regenerates exactly the proxies that read one
when it changes, and policies match them by that key. Only those the zone may reach
(``spec.zones``, all when empty) are there.

The CA of a TLS origination is read here: inline from the spec, or from the mesh's
``Secret`` named by ``caCert.secretRef``. Only its certificates are kept, each written
again as PEM (a Secret can hold anything; a private key in it never reaches a cluster).
A CA that cannot be read makes ``ExternalService.problem`` say why, and the generator
gives the service no endpoints rather than an unverified connection.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.model.base import Resource
from gossamer.model.meshexternalservice import (
    MeshExternalServiceSpec,
    Tls,
    Verification,
    VerificationMode,
    Versions,
    destination_key,
)
from gossamer.model.secret import SecretSpec
from proxy.context import ExternalService, ExternalTls, Service

# (name) -> the mesh's Secret of that name, if any.
SecretLookup = Callable[[str], Resource | None]


def certificates(data: bytes) -> bytes:
    """Only the PEM certificates of ``data``, re-encoded; ``ValueError`` when none."""
    certs = x509.load_pem_x509_certificates(data)
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _ca(conf: Tls, secret: SecretLookup) -> tuple[bytes, str]:
    """The CA bundle of ``conf`` and, when it cannot be read, why."""
    ca = conf.verification.ca_cert if conf.verification else None
    if ca is None:
        return b"", ""
    if ca.inline is not None:
        return certificates(ca.inline.encode()), ""  # checked when applied
    res = secret(ca.secret_ref or "")
    if res is None or not isinstance(res.spec, SecretSpec):
        return b"", f"its caCert Secret {ca.secret_ref!r} does not exist"
    try:
        return certificates(res.spec.value()), ""
    except (ValueError, binascii.Error):
        return b"", f"its caCert Secret {ca.secret_ref!r} holds no PEM certificate"


def external_tls(conf: Tls | None, secret: SecretLookup) -> tuple[ExternalTls | None, str]:
    """The TLS to originate per ``conf`` (None: plaintext), and why its CA is unreadable."""
    if conf is None or not conf.enabled:
        return None, ""
    verification = conf.verification or Verification(mode=VerificationMode.SKIP_ALL)
    ca_pem, problem = _ca(conf, secret)
    versions = conf.version or Versions()
    return ExternalTls(
        mode=verification.mode.value, server_name=verification.server_name or "",
        subject_alt_names=tuple((s.type.value, s.value)
                                for s in verification.subject_alt_names or ()),
        ca_pem=ca_pem,
        min_version=versions.min.value if versions.min else "",
        max_version=versions.max.value if versions.max else ""), problem


def external_service(res: Resource, secret: SecretLookup) -> Service | None:
    """The destination ``res`` is, or None when it is no MeshExternalService."""
    spec = res.spec
    if not isinstance(spec, MeshExternalServiceSpec):
        return None
    tls, problem = external_tls(spec.tls, secret)
    protocol = spec.match.protocol.value
    external = ExternalService(
        name=res.name, port=spec.match.port, protocol=protocol,
        endpoints=tuple((e.address, e.port) for e in spec.endpoints), tls=tls,
        problem=problem)
    return Service(name=destination_key(res.name), protocol=protocol, external=external)


def external_services(resources: Iterable[Resource], zone: str,
                      secret: SecretLookup) -> dict[str, Service]:
    """The destinations of the MeshExternalServices ``zone`` may reach, by key."""
    out = {}
    for res in resources:
        spec = res.spec
        if isinstance(spec, MeshExternalServiceSpec) and spec.allowed_in(zone):
            service = external_service(res, secret)
            if service is not None:
                out[service.name] = service
    return out
