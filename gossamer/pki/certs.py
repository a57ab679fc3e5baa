"""Keys, CAs, CSRs and certificates for the mesh and the control planes.

Pure functions over ``cryptography`` objects; the clock is passed in. A ``KeyPair`` is a
certificate with its private key. Workload identities are SPIFFE URI SANs
(``spiffe://<mesh>/<service>``); CA certificates carry basicConstraints with an explicit
path length (zone intermediates get 0, so they can sign workloads and nothing else).

A CSR is judged here before anything is signed (``check_csr``): its key must be one the
mesh can rely on, and the subject of what we sign is ours, never the CSR's (a requester
could otherwise put a misleading or over-long name in a certificate the mesh vouches
for): the CSR only contributes its public key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Re-exported: the writers moved to a module without cryptography (the agent uses them).
from gossamer.pki.files import write_public as write_public
from gossamer.pki.files import write_secret as write_secret

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks a little behind ours
MIN_RSA_BITS = 2048
SIGNABLE_CURVES = ("secp256r1", "secp384r1")
SIGNABLE_KEYS = "EC P-256 or P-384, Ed25519, or RSA of at least 2048 bits"
WORKLOAD_SUBJECT = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gossamer")])
ZONE_CA_NAME = "Gossamer zone intermediate"


class CsrRefused(ValueError):
    """A CSR we will not sign. The requester's fault and never retryable as it is: the
    agent API answers INVALID_ARGUMENT with this message."""


@dataclass(frozen=True)
class KeyPair:
    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> KeyPair:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError("unsupported key type: expected ECDSA or RSA")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)


def new_key(key_type: str = "ecdsa-p256") -> PrivateKey:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type in ("rsa-2048", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise ValueError(f"unknown key type {key_type!r}")


def _name(common_name: str, org: str = "Gossamer") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _ca_extensions(builder: x509.CertificateBuilder, public: object,
                   path_length: int | None) -> x509.CertificateBuilder:
    return (builder
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public),  # type: ignore[arg-type]
                           critical=False))


def new_root_ca(common_name: str, now: dt.datetime, valid_for: dt.timedelta,
                key_type: str = "ecdsa-p256", path_length: int | None = 1) -> KeyPair:
    key = new_key(key_type)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name)).issuer_name(_name(common_name))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE).not_valid_after(now + valid_for))
    cert = _ca_extensions(builder, key.public_key(), path_length).sign(key, hashes.SHA256())
    return KeyPair(cert, key)


def new_csr(key: PrivateKey, common_name: str,
            uris: Sequence[str] = ()) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False)
    return builder.sign(key, hashes.SHA256())


def _key_kind(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def check_csr(csr: x509.CertificateSigningRequest) -> None:
    """Refuse (``CsrRefused``) a CSR whose signature does not verify or whose key is not
    one we sign: EC P-256/P-384, Ed25519, RSA of 2048 bits or more. Weak keys (RSA-1024)
    can be factored, DSA and other curves are not what the mesh's TLS 1.3 peers expect."""
    try:
        key = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CsrRefused(f"the CSR's key cannot be read ({exc}); use {SIGNABLE_KEYS}") from None
    if not valid:
        raise CsrRefused("the CSR's signature does not verify")
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in SIGNABLE_CURVES:
        return
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS:
        return
    raise CsrRefused(f"the CSR's key is {_key_kind(key)}: only {SIGNABLE_KEYS} keys are "
                     "signed")


def _issuer_builder(issuer: KeyPair, subject: x509.Name, public: object, now: dt.datetime,
                    valid_for: dt.timedelta) -> x509.CertificateBuilder:
    not_after = min(now + valid_for, issuer.cert.not_valid_after_utc)
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer.cert.subject)
            .public_key(public)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(not_after)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.key.public_key()), critical=False))


def sign_intermediate(issuer: KeyPair, csr: x509.CertificateSigningRequest, now: dt.datetime,
                      valid_for: dt.timedelta, common_name: str = ZONE_CA_NAME
                      ) -> x509.Certificate:
    """A CA that may sign leaf certificates only (path length 0), named ``common_name``
    by the signer (the CSR's subject is ignored)."""
    check_csr(csr)
    builder = _issuer_builder(issuer, _name(common_name), csr.public_key(), now, valid_for)
    return _ca_extensions(builder, csr.public_key(), 0).sign(issuer.key, hashes.SHA256())


def sign_leaf(issuer: KeyPair, csr: x509.CertificateSigningRequest, now: dt.datetime,
              valid_for: dt.timedelta, *, uris: Sequence[str] = (), dns: Sequence[str] = (),
              ips: Sequence[str] = (), server: bool = True, client: bool = True,
              common_name: str | None = None) -> x509.Certificate:
    """A leaf certificate with exactly the SANs given (the CSR's own SANs and subject are
    ignored). Its subject is ``common_name`` when the signer names it (the control
    planes' own certificates), else just ``O=Gossamer``: a workload is its SPIFFE SAN,
    which is all Envoy and our code read, and a SPIFFE ID may not fit a 64-character CN."""
    check_csr(csr)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    subject = WORKLOAD_SUBJECT if common_name is None else _name(common_name)
    builder = (_issuer_builder(issuer, subject, csr.public_key(), now, valid_for)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=True, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer.key, hashes.SHA256())


def new_leaf(issuer: KeyPair, common_name: str, now: dt.datetime, valid_for: dt.timedelta, *,
             uris: Sequence[str] = (), dns: Sequence[str] = (), ips: Sequence[str] = (),
             server: bool = True, client: bool = True) -> KeyPair:
    """A new key and a leaf certificate for it, for material the issuer may hold itself."""
    key = new_key()
    cert = sign_leaf(issuer, new_csr(key, common_name), now, valid_for, uris=uris, dns=dns,
                     ips=ips, server=server, client=client, common_name=common_name)
    return KeyPair(cert, key)


def spiffe_id(mesh: str, service: str) -> str:
    return f"spiffe://{mesh}/{service}"


def public_der(key: object) -> bytes:
    """A public key as DER SubjectPublicKeyInfo: how two keys are compared."""
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in ext.value.get_values_for_type(x509.UniformResourceIdentifier)]


# -- trust bundles ----------------------------------------------------------------------


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 of the certificate's DER, lowercase hex: how roots are named."""
    return cert.fingerprint(hashes.SHA256()).hex()


def bundle_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """A trust bundle: the distinct certificates, PEM, in a stable order (by fingerprint),
    so the same roots always give the same bytes and the same digest."""
    unique = {fingerprint(c): c for c in certs}
    return b"".join(unique[f].public_bytes(serialization.Encoding.PEM) for f in sorted(unique))


def bundle_digest(pem: bytes) -> str:
    """A digest of the roots in a PEM bundle, independent of their order and of the PEM
    text around them ("" for an empty bundle)."""
    certs = x509.load_pem_x509_certificates(pem) if pem.strip() else []
    if not certs:
        return ""
    return hashes_hex(b"".join(bytes.fromhex(f) for f in sorted(fingerprint(c) for c in certs)))


def hashes_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()


def chain_root(chain: Sequence[x509.Certificate],
               roots: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The root among ``roots`` that ``chain`` (leaf first, then the CAs above it) leads to
    by signatures, or None. Only signatures are checked, not validity periods."""
    if not chain:
        return None
    path = list(chain)
    for cert in roots:
        if fingerprint(cert) == fingerprint(path[-1]):
            return cert  # the chain already ends at the root
    for i in range(len(path) - 1):
        if not _issued_by(path[i], path[i + 1]):
            return None
    for root in roots:
        if _issued_by(path[-1], root):
            return root
    return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True
