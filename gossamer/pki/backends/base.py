"""What every certificate authority backend of a mesh offers (DESIGN §5).

A backend is one entry of ``Mesh.mtls.backends``: ``builtin`` (a root generated and kept
by the control plane that owns the mesh roots), ``provided`` (a CA certificate and key
from the mesh's Secrets) or ``vault`` (Vault's PKI engine through ``hvac``). The control
planes talk to all three through ``CaProvider``:

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
bad credentials), ``InvalidCaMaterial`` (the provided material is unusable). Messages name
the mesh, the backend and the cause.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from gossamer.errors import GossamerError


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
    http_status = 400
    title = "invalid CA material"
    caller_fault = True


@dataclass(frozen=True)
class SignedChain:
    """A new certificate, the CA certificates between it and a root (root excluded,
    nearest first), and the roots the chain ends at."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]


# Reads the bytes of a Secret of the mesh by name (NotFound if it does not exist).
SecretReader = Callable[[str], Awaitable[bytes]]


class CaProvider(Protocol):
    mesh: str
    backend: str          # the backend's name in the Mesh
    type: str             # builtin | provided | vault
    issues_workloads: bool

    async def roots(self) -> Sequence[x509.Certificate]: ...

    async def sign_intermediate(self, csr: x509.CertificateSigningRequest, now: dt.datetime,
                                lifetime: dt.timedelta) -> SignedChain: ...

    async def sign_workload(self, csr: x509.CertificateSigningRequest, uris: Sequence[str],
                            now: dt.datetime, lifetime: dt.timedelta) -> SignedChain: ...

    async def check(self) -> None: ...
