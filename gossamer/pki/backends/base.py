"""What every certificate authority backend of a mesh offers (DESIGN §5).

A backend is one entry of ``Mesh.mtls.backends``: ``builtin`` (a root generated and kept
by the control plane that owns the mesh roots), ``provided`` (a CA certificate from a
Secret of the mesh, its key from a GlobalSecret that, like a builtin root, stays with that
control plane) or ``vault`` (Vault's PKI engine through ``hvac``). The control planes talk
to all three through ``CaProvider``:

* ``roots()`` — the trust anchors (self-signed) that everything it signs chains to; what
  goes into the mesh's trust bundle while the backend is in use;
* ``sign_intermediate(csr, …)`` — a zone's intermediate CA (path length 0) from the CSR
  the zone sent; its private key never leaves the zone;
* ``sign_workload(csr, uris, …)`` — only for a backend that ``issues_workloads`` (vault in
  ``issue`` mode): the workload certificate straight from the backend, so no mesh key
  exists outside it;
* ``check()`` — that the backend can work right now (material valid, server answers,
  credentials accepted), raising the error a platform engineer needs to read.

Every failure is a ``CaBackendError``: ``CaUnreachable`` (retry later: the server did not
answer or answered 5xx) or ``CaRefused`` (the backend said no: denied policy, unknown role,
bad credentials, a server certificate that does not verify), ``InvalidCaMaterial`` (the
provided material is unusable). Messages name the mesh, the backend and the cause.

Backends whose CA key is held here (builtin, provided) also offer ``local_ca()``: the
``LocalCa`` a standalone zone signs workload certificates with directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gossamer.errors import GossamerError
from gossamer.pki.certs import ZONE_CA_NAME, KeyPair, fingerprint


class CaBackendError(GossamerError):
    http_status = 502
    title = "certificate authority error"


class CaUnreachable(CaBackendError):
    http_status = 503
    title = "certificate authority unreachable"
    retryable = True


class CaRefused(CaBackendError):
    http_status = 502
    title = "certificate authority refused"


class InvalidCaMaterial(CaBackendError):
    """``part`` says which half is at fault: "cert", "key" or "" (both, or neither)."""

    http_status = 400
    title = "invalid CA material"
    caller_fault = True

    def __init__(self, detail: str, part: str = "") -> None:
        super().__init__(detail)
        self.part = part


@dataclass(frozen=True)
class SignedChain:
    """A new certificate, the CA certificates between it and a root (root excluded,
    nearest first), and the roots the chain ends at."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class LocalCa:
    """A CA whose key is held here: ``ca`` signs; ``chain`` is what follows a certificate
    it signs (the CA certificate and its issuers, root excluded; empty when ``ca`` is the
    root); ``roots`` the self-signed anchors."""

    ca: KeyPair
    chain: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]


# Reads the bytes of a secret by name (InvalidCaMaterial naming it if it does not exist).
SecretReader = Callable[[str], Awaitable[bytes]]


class CaProvider(Protocol):
    mesh: str
    backend: str          # the backend's name in the Mesh
    type: str             # builtin | provided | vault
    issues_workloads: bool

    async def roots(self) -> Sequence[x509.Certificate]: ...

    async def sign_intermediate(self, csr: x509.CertificateSigningRequest, now: dt.datetime,
                                lifetime: dt.timedelta, common_name: str = ZONE_CA_NAME
                                ) -> SignedChain: ...

    async def sign_workload(self, csr: x509.CertificateSigningRequest, uris: Sequence[str],
                            now: dt.datetime, lifetime: dt.timedelta) -> SignedChain: ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...   # release connections; the provider is done


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``cert`` (names and signature; not validity periods)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    return issued_by(cert, cert)


def path_to_root(cert: x509.Certificate, pool: Sequence[x509.Certificate]
                 ) -> tuple[tuple[x509.Certificate, ...], x509.Certificate | None]:
    """Follow signatures from ``cert`` up through ``pool``: the CA certificates between
    ``cert`` and a self-signed root (nearest first, root excluded), and that root — or
    None when the pool does not lead to one."""
    own = fingerprint(cert)
    candidates = [c for c in pool if fingerprint(c) != own]
    chain: list[x509.Certificate] = []
    current = cert
    while not is_self_signed(current):
        issuer = next((c for c in candidates if issued_by(current, c)), None)
        if issuer is None:
            return tuple(chain), None
        candidates.remove(issuer)
        if is_self_signed(issuer):
            return tuple(chain), issuer
        chain.append(issuer)
        current = issuer
    return tuple(chain), current
