"""The vault backend: Vault's (or OpenBao's) PKI secrets engine.

``mode: intermediate`` — the zones' intermediate CAs are signed at
``<pki>/root/sign-intermediate`` (CSR values, path length 0); ``mode: issue`` — every
workload certificate is signed at ``<pki>/sign/<role>`` from the agent's CSR, with exactly
the URI SANs the control plane decided, so no mesh key exists outside Vault. The roots are
the self-signed top of the mount's CA chain (``<pki>/cert/ca_chain``), cached briefly.
What Vault returns is checked before it is used: the key is the CSR's, a zone's
certificate is a CA and a workload's is not, its URI SANs are the ones asked for, and it
chains to a root of the mount.

The requests themselves (TLS, logins, worker threads, timeouts, and the translation of
hvac's and requests' errors to ``CaUnreachable`` and ``CaRefused``) are
``gossamer.pki.backends.vault_session``'s. An ``http://`` address is refused when the Mesh
is parsed unless ``insecureHttp: true`` says it is meant (local development only: the token
would cross the network in clear).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hvac.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.model.mesh import CaBackend, VaultConf
from gossamer.pki.backends.base import (
    CaBackendError,
    CaRefused,
    InvalidCaMaterial,
    SecretReader,
    SignedChain,
    is_self_signed,
    path_to_root,
)
from gossamer.pki.backends.vault_session import TIMEOUT, VaultSession, cut
from gossamer.pki.certs import ZONE_CA_NAME, check_csr, uri_sans

ROOTS_TTL = 60.0       # seconds a mount's CA chain is reused before it is read again
TTL_MARGIN = dt.timedelta(minutes=1)


# -- the provider ---------------------------------------------------------------------------


def _ttl(lifetime: dt.timedelta, now: dt.datetime, issuer: x509.Certificate | None) -> str:
    if issuer is not None:  # Vault refuses a certificate that would outlive its issuer
        lifetime = min(lifetime, issuer.not_valid_after_utc - now - TTL_MARGIN)
    return f"{max(int(lifetime.total_seconds()), 60)}s"


def _public_der(key: object) -> bytes:
    return key.public_bytes(Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class _CaChain:
    certs: tuple[x509.Certificate, ...]   # the mount's CA chain, issuing CA first
    roots: tuple[x509.Certificate, ...]
    read_at: float


class VaultProvider:
    """The ``CaProvider`` of one vault backend of a mesh (``gossamer.pki.backends.base``)."""

    type = "vault"

    def __init__(self, mesh: str, backend: CaBackend, read_secret: SecretReader, *,
                 timeout: float = TIMEOUT, roots_ttl: float = ROOTS_TTL,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(backend.conf, VaultConf):
            raise InvalidCaMaterial(f"mesh {mesh}, backend {backend.name}: a vault backend "
                                    "needs conf (address, pki, role, auth)")
        self.mesh = mesh
        self.backend = backend.name
        self.conf = backend.conf
        self.issues_workloads = self.conf.mode == "issue"
        self.address = self.conf.address.rstrip("/")
        self._roots_ttl = roots_ttl
        self._monotonic = monotonic
        self._chain: _CaChain | None = None
        # The requests: the logged-in client, its connections and threads.
        self.session = VaultSession(self._who(), f"vault-{mesh}-{self.backend}", self.conf,
                                    read_secret, timeout)

    # -- CaProvider -------------------------------------------------------------------------

    async def roots(self) -> Sequence[x509.Certificate]:
        return list((await self._ca_chain()).roots)

    async def sign_intermediate(self, csr: x509.CertificateSigningRequest, now: dt.datetime,
                                lifetime: dt.timedelta, common_name: str = ZONE_CA_NAME
                                ) -> SignedChain:
        if self.issues_workloads:
            raise CaBackendError(f"{self._who()} signs workload certificates itself (mode "
                                 "issue): the zones need no intermediate from it")
        check_csr(csr)  # before Vault sees it: Vault signs weak keys too
        ca = await self._ca_chain()
        path = f"{self.conf.pki}/root/sign-intermediate"
        data = await self.session.call("post", path, {
            # The subject is ours: Vault's use_csr_values would copy the zone's.
            "csr": csr.public_bytes(Encoding.PEM).decode(), "use_csr_values": False,
            "common_name": common_name, "exclude_cn_from_sans": True,
            "max_path_length": 0, "ttl": _ttl(lifetime, now, ca.certs[0] if ca.certs else None),
            "format": "pem"})
        cert = self._signed(data, path, csr)
        if not _is_ca(cert):
            raise CaRefused(f"{self._who()}: {path} returned a certificate that is not a CA")
        return await self._with_chain(cert, data, path)

    async def sign_workload(self, csr: x509.CertificateSigningRequest, uris: Sequence[str],
                            now: dt.datetime, lifetime: dt.timedelta) -> SignedChain:
        if not self.issues_workloads:
            raise CaBackendError(f"{self._who()} signs the zones' intermediates (mode "
                                 "intermediate): workload certificates come from the zones")
        check_csr(csr)  # before Vault sees it: Vault signs weak keys too
        ca = await self._ca_chain()
        path = f"{self.conf.pki}/sign/{self.conf.role}"
        data = await self.session.call("post", path, {
            "csr": csr.public_bytes(Encoding.PEM).decode(), "uri_sans": ",".join(uris),
            "exclude_cn_from_sans": True, "format": "pem",
            "ttl": _ttl(lifetime, now, ca.certs[0] if ca.certs else None)})
        cert = self._signed(data, path, csr)
        if _is_ca(cert):
            raise CaRefused(f"{self._who()}: {path} returned a CA certificate for a workload")
        if sorted(uri_sans(cert)) != sorted(uris):
            # A role with use_csr_sans takes the CSR's SANs: the agent would pick its own
            # identity. Never hand such a certificate out.
            raise CaRefused(f"{self._who()}: role {self.conf.role!r} of PKI mount "
                            f"{self.conf.pki!r} returned URI SANs {sorted(uri_sans(cert))} "
                            f"instead of {sorted(uris)}; set use_csr_sans=false on the role")
        return await self._with_chain(cert, data, path)

    async def check(self) -> None:
        """Log in, read the roots, and make sure the mode's path is usable."""
        self._chain = None
        await self._ca_chain()
        if self.issues_workloads:
            await self._check_role()
        else:
            await self._check_capability(f"{self.conf.pki}/root/sign-intermediate")

    async def close(self) -> None:
        """Drop the connections and threads (a later call makes new ones)."""
        self.release()

    def release(self) -> None:
        """``close()`` without a loop: nothing here waits, neither on Vault nor on a request
        in flight (it finishes in its thread; its connection is not reused)."""
        self.session.release()

    # -- reading and checking -----------------------------------------------------------------

    async def _ca_chain(self) -> _CaChain:
        cached = self._chain
        if cached is not None and self._monotonic() - cached.read_at < self._roots_ttl:
            return cached
        path = f"{self.conf.pki}/cert/ca_chain"
        data = await self.session.call("get", path)
        pem = str(data.get("ca_chain") or data.get("certificate") or "")
        try:
            certs = tuple(x509.load_pem_x509_certificates(pem.encode())) if pem.strip() else ()
        except ValueError as exc:
            raise CaRefused(f"{self._who()}: {path} at Vault {self.address} returned a CA "
                            f"chain that does not parse: {cut(str(exc))}") from None
        roots = tuple(c for c in certs if is_self_signed(c))
        if not roots:
            raise CaRefused(f"{self._who()}: the CA chain of PKI mount {self.conf.pki!r} at "
                            f"Vault {self.address} does not end at a self-signed root "
                            f"({len(certs)} certificate(s)); import the full chain, root "
                            "included, into the mount")
        self._chain = _CaChain(certs=certs, roots=roots, read_at=self._monotonic())
        return self._chain

    async def _check_role(self) -> None:
        path = f"{self.conf.pki}/roles/{self.conf.role}"
        try:
            data = await self.session.call("get", path)
        except CaRefused as exc:
            if not isinstance(exc.__cause__, hvac.exceptions.InvalidPath):
                raise
            data = {}
        if not data:
            raise CaRefused(f"{self._who()}: role {self.conf.role!r} does not exist in PKI "
                            f"mount {self.conf.pki!r} of Vault at {self.address}")
        if data.get("use_csr_sans", True):
            raise CaRefused(f"{self._who()}: role {self.conf.role!r} takes SANs from the CSR "
                            "(use_csr_sans=true); set use_csr_sans=false so the control plane "
                            "decides workload identities")
        if data.get("use_csr_common_name", True):
            raise CaRefused(f"{self._who()}: role {self.conf.role!r} copies the CSR's common "
                            "name into the certificate (use_csr_common_name=true); set "
                            "use_csr_common_name=false and require_cn=false so the subject "
                            "is the role's, not the requester's")
        if not data.get("allowed_uri_sans"):
            raise CaRefused(f"{self._who()}: role {self.conf.role!r} allows no URI SANs; set "
                            f"allowed_uri_sans to spiffe://{self.mesh}/*,gossamer://*")

    async def _check_capability(self, target: str) -> None:
        data = await self.session.call("post", "sys/capabilities-self", {"paths": [target]})
        caps = data.get(target) or data.get("capabilities") or []
        if not {"update", "root", "sudo"} & set(caps) or "deny" in caps:
            raise CaRefused(f"{self._who()}: the token's policy does not allow {target} at "
                            f"Vault {self.address} (capabilities: "
                            f"{cut(', '.join(map(str, caps))) or 'none'}); grant it update")

    def _signed(self, data: dict[str, Any], path: str,
                csr: x509.CertificateSigningRequest) -> x509.Certificate:
        try:
            cert = x509.load_pem_x509_certificate(str(data["certificate"]).encode())
        except (KeyError, ValueError):
            raise CaRefused(f"{self._who()}: {path} returned no certificate") from None
        if _public_der(cert.public_key()) != _public_der(csr.public_key()):
            raise CaRefused(f"{self._who()}: {path} returned a certificate for another key")
        return cert

    async def _with_chain(self, cert: x509.Certificate, data: dict[str, Any],
                          path: str) -> SignedChain:
        ca = await self._ca_chain()
        pool = [*_pem_list(data.get("ca_chain")), *_pem_list(data.get("issuing_ca")), *ca.certs]
        chain, root = path_to_root(cert, pool)
        if root is None:
            raise CaRefused(f"{self._who()}: the certificate from {path} does not chain to a "
                            f"self-signed root of PKI mount {self.conf.pki!r}")
        return SignedChain(certificate=cert, chain=chain, roots=(root,))

    def _who(self) -> str:
        return f"mesh {self.mesh}, backend {self.backend}"


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _pem_list(value: object) -> list[x509.Certificate]:
    if isinstance(value, list):
        return [c for item in value for c in _pem_list(item)]
    if isinstance(value, str) and "BEGIN CERTIFICATE" in value:
        return x509.load_pem_x509_certificates(value.encode())
    return []
