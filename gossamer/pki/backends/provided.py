"""The provided backend: a CA certificate and key the platform team brings.

``conf.cert`` holds the CA certificate, optionally followed by its issuers up to the root
(so an intermediate of a corporate PKI works): public, a Secret of the mesh or inline.
``conf.key`` names the GlobalSecret holding its private key (ECDSA or RSA, PKCS#8 or
traditional, unencrypted): a kind never synced, so the key stays with the control plane
that owns the mesh roots, like a builtin root's. (An inline key is refused on apply; one
stored before that rule is still read, so its mesh can switch away without an outage.)
``validate_provided`` is the pure check run on apply and before every use; each refusal
says what is wrong in the words a platform engineer would look for (basicConstraints,
keyCertSign, pathLenConstraint, the dates).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gossamer.model.mesh import CaBackend, ProvidedConf, SecretRef
from gossamer.pki.backends.base import (
    CaBackendError,
    InvalidCaMaterial,
    LocalCa,
    SecretReader,
    SignedChain,
    is_self_signed,
    issued_by,
)
from gossamer.pki.certs import ZONE_CA_NAME, KeyPair, sign_intermediate

_KEY_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----",
                        re.DOTALL)


def describe(cert: x509.Certificate) -> str:
    subject = cert.subject.rfc4514_string()
    return f"'{subject}'" if subject else f"(empty subject, serial {cert.serial_number:x})"


def _when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise InvalidCaMaterial("the certificate is not PEM: no '-----BEGIN CERTIFICATE-----' "
                                "block found", "cert")
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise InvalidCaMaterial(f"the certificate PEM does not parse: {exc}", "cert") from None


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    block = _KEY_BLOCK.search(pem)
    if block is None:
        raise InvalidCaMaterial("the key is not a PEM private key: expected a '-----BEGIN "
                                "PRIVATE KEY-----', '-----BEGIN EC PRIVATE KEY-----' or "
                                "'-----BEGIN RSA PRIVATE KEY-----' block", "key")
    if b"ENCRYPTED" in block.group(0):
        raise InvalidCaMaterial("the key is encrypted with a passphrase; store it "
                                "unencrypted (the Secret is what protects it)", "key")
    try:
        key = serialization.load_pem_private_key(block.group(0), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidCaMaterial(f"the private key does not parse: {exc}", "key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvalidCaMaterial(f"the key is a {type(key).__name__.removeprefix('_')}; only "
                                "ECDSA and RSA keys are supported", "key")
    return key


def _public_der(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_ca(cert: x509.Certificate, below: int, now: dt.datetime) -> None:
    """One CA certificate of the chain, with ``below`` CA certificates to sit under it
    (the zone intermediate counts: the provided CA itself has ``below`` = 1)."""
    name = describe(cert)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise InvalidCaMaterial(f"certificate {name} is not a CA: it has no basicConstraints "
                                "extension", "cert") from None
    if not constraints.ca:
        raise InvalidCaMaterial(f"certificate {name} is not a CA: its basicConstraints say "
                                "CA:FALSE", "cert")
    if cert.not_valid_before_utc > now:
        raise InvalidCaMaterial(f"certificate {name} is not valid yet: valid from "
                                f"{_when(cert.not_valid_before_utc)} (now {_when(now)})", "cert")
    if cert.not_valid_after_utc <= now:
        raise InvalidCaMaterial(f"certificate {name} has expired: valid until "
                                f"{_when(cert.not_valid_after_utc)} (now {_when(now)})", "cert")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise InvalidCaMaterial(f"certificate {name} has a keyUsage without keyCertSign: it "
                                "may not sign certificates", "cert")
    limit = constraints.path_length
    if limit is not None and limit < below:
        if below == 1:
            raise InvalidCaMaterial(
                f"certificate {name} has pathLenConstraint {limit}: it could not sign the "
                "zones' intermediate CAs; it needs a pathLenConstraint of at least 1, or "
                "none", "cert")
        raise InvalidCaMaterial(
            f"certificate {name} has pathLenConstraint {limit}, but {below} CA certificates "
            "would sit below it (the intermediates of the secret and the zones' own)", "cert")


def _check_links(certs: Sequence[x509.Certificate]) -> None:
    for i in range(len(certs) - 1):
        if not issued_by(certs[i], certs[i + 1]):
            raise InvalidCaMaterial(
                f"certificate #{i + 2} {describe(certs[i + 1])} did not sign certificate "
                f"#{i + 1} {describe(certs[i])}: list the CA certificate first, then each "
                "issuer in order up to the root", "cert")
    top = certs[-1]
    if not is_self_signed(top):
        issuer = top.issuer.rfc4514_string()
        raise InvalidCaMaterial(
            f"the chain ends at {describe(top)}, issued by '{issuer}', which is not in the "
            f"secret: add the root certificate ('{issuer}', self-signed) after it in the same "
            "secret; sidecars need a self-signed root to trust", "cert")


def validate_provided(cert_pem: bytes, key_pem: bytes, now: dt.datetime
                      ) -> tuple[KeyPair, tuple[x509.Certificate, ...],
                                 tuple[x509.Certificate, ...]]:
    """The CA as a ``KeyPair``, the chain that follows what it signs (the CA certificate
    and the intermediates above it, root excluded; empty when the CA is the root) and the
    roots (the self-signed top), or ``InvalidCaMaterial`` saying what is wrong."""
    certs = load_certificates(cert_pem)
    key = load_private_key(key_pem)
    ca = certs[0]
    _check_ca(ca, 1, now)
    if _public_der(key.public_key()) != _public_der(ca.public_key()):
        raise InvalidCaMaterial(f"the key does not match certificate {describe(ca)}: it is "
                                "the private key of another certificate", "key")
    _check_links(certs)
    for below, cert in enumerate(certs[1:], start=2):
        _check_ca(cert, below, now)
    return KeyPair(ca, key), tuple(certs[:-1]), (certs[-1],)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def read_ref(ref: SecretRef, read_secret: SecretReader) -> bytes:
    if ref.inline is not None:
        return ref.inline.encode()
    assert ref.secret_ref is not None  # SecretRef holds exactly one of the two
    return await read_secret(ref.secret_ref)


class ProvidedProvider:
    type = "provided"
    issues_workloads = False

    def __init__(self, mesh: str, backend: CaBackend, read_secret: SecretReader,
                 read_global_secret: SecretReader,
                 clock: Callable[[], dt.datetime] = _utcnow) -> None:
        """``read_secret`` reads the mesh's Secrets (the cert); ``read_global_secret``
        GlobalSecrets (the key)."""
        if not isinstance(backend.conf, ProvidedConf):
            raise InvalidCaMaterial(f"mesh {mesh}, backend {backend.name}: a provided backend "
                                    "needs conf.cert and conf.key")
        self.mesh = mesh
        self.backend = backend.name
        self._conf = backend.conf
        self._read_secret = read_secret
        self._read_global_secret = read_global_secret
        self._clock = clock
        # The last material read, and what it validated to (re-checked when it changes).
        self._seen: tuple[bytes, bytes] | None = None
        self._local: LocalCa | None = None

    async def local_ca(self, now: dt.datetime | None = None) -> LocalCa:
        """The CA from the secrets as they are now, validated (``InvalidCaMaterial``)."""
        now = now or self._clock()
        try:
            material = (await read_ref(self._conf.cert, self._read_secret),
                        await read_ref(self._conf.key, self._read_global_secret))
            local = self._local
            if material != self._seen or local is None or not _valid_at(local, now):
                ca, chain, roots = validate_provided(*material, now)
                local = LocalCa(ca=ca, chain=chain, roots=roots)
                self._seen, self._local = material, local
        except InvalidCaMaterial as exc:
            raise InvalidCaMaterial(f"{self._who()}: {exc.detail}", exc.part) from None
        return local

    async def roots(self) -> Sequence[x509.Certificate]:
        return list((await self.local_ca()).roots)

    async def sign_intermediate(self, csr: x509.CertificateSigningRequest, now: dt.datetime,
                                lifetime: dt.timedelta, common_name: str = ZONE_CA_NAME
                                ) -> SignedChain:
        local = await self.local_ca(now)
        try:
            # capped at the CA's expiry
            cert = sign_intermediate(local.ca, csr, now, lifetime, common_name)
        except ValueError as exc:
            raise CaBackendError(f"{self._who()}: {exc}") from None
        return SignedChain(certificate=cert, chain=local.chain, roots=local.roots)

    async def sign_workload(self, csr: x509.CertificateSigningRequest, uris: Sequence[str],
                            now: dt.datetime, lifetime: dt.timedelta) -> SignedChain:
        raise CaBackendError(f"{self._who()} does not issue workload certificates: the "
                             "zones sign them with their intermediates")

    async def check(self) -> None:
        await self.local_ca()

    async def close(self) -> None:
        return None

    def _who(self) -> str:
        return f"mesh {self.mesh}, backend {self.backend}"


def _valid_at(local: LocalCa, now: dt.datetime) -> bool:
    certs = (local.ca.cert, *local.chain, *local.roots)
    return all(c.not_valid_before_utc <= now < c.not_valid_after_utc for c in certs)
