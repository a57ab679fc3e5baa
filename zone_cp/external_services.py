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

A client certificate (``tls.clientCert``, inline or a Secret) and its key (``clientKey``,
always a Secret) are read the same way: the certificates re-encoded, the key parsed and
written again as unencrypted PKCS#8 PEM, and checked to be the certificate's key. Only
the zone egress presents them (``zone_cp.mesh_state`` takes the key out of what
sidecars are generated from); one that cannot be read is a ``problem`` too.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from gossamer.model.base import Resource
from gossamer.model.meshexternalservice import (
    CaCert,
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
    return _chain(ca, secret, "caCert")


def _chain(ref: CaCert, secret: SecretLookup, what: str) -> tuple[bytes, str]:
    """The certificates ``ref`` names (inline or a Secret) and, when unreadable, why."""
    if ref.inline is not None:
        return certificates(ref.inline.encode()), ""  # checked when applied
    res = secret(ref.secret_ref or "")
    if res is None or not isinstance(res.spec, SecretSpec):
        return b"", f"its {what} Secret {ref.secret_ref!r} does not exist"
    try:
        return certificates(res.spec.value()), ""
    except (ValueError, binascii.Error):
        return b"", f"its {what} Secret {ref.secret_ref!r} holds no PEM certificate"


def _client(conf: Tls, secret: SecretLookup) -> tuple[bytes, bytes, str]:
    """The client certificate chain and key of ``conf`` (PEM), and why they cannot be
    used, if so."""
    if conf.client_cert is None or conf.client_key is None:
        return b"", b"", ""
    chain, problem = _chain(conf.client_cert, secret, "clientCert")
    if problem:
        return b"", b"", problem
    name = conf.client_key.secret_ref
    res = secret(name)
    if res is None or not isinstance(res.spec, SecretSpec):
        return b"", b"", f"its clientKey Secret {name!r} does not exist"
    try:
        key = load_pem_private_key(res.spec.value(), password=None)
    except (ValueError, TypeError, binascii.Error):
        return b"", b"", (f"its clientKey Secret {name!r} holds no unencrypted PEM "
                          "private key")
    leaf = x509.load_pem_x509_certificates(chain)[0]
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        return b"", b"", f"its clientKey Secret {name!r} is not the clientCert's key"
    return chain, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()), ""


def external_tls(conf: Tls | None, secret: SecretLookup) -> tuple[ExternalTls | None, str]:
    """The TLS to originate per ``conf`` (None: plaintext), and why its CA or client
    certificate is unreadable."""
    if conf is None or not conf.enabled:
        return None, ""
    verification = conf.verification or Verification(mode=VerificationMode.SKIP_ALL)
    ca_pem, problem = _ca(conf, secret)
    client_cert, client_key, client_problem = _client(conf, secret)
    versions = conf.version or Versions()
    return ExternalTls(
        mode=verification.mode.value, server_name=verification.server_name or "",
        subject_alt_names=tuple((s.type.value, s.value)
                                for s in verification.subject_alt_names or ()),
        ca_pem=ca_pem,
        min_version=versions.min.value if versions.min else "",
        max_version=versions.max.value if versions.max else "",
        client_cert_pem=client_cert, client_key_pem=client_key), problem or client_problem


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
