"""What the vault CA backend tests share: the mounts' names, a backend configuration for a
server, a token-authenticated provider reading its Secrets from a dict (``reader``), and a
zone CSR to sign.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509

from gossamer.model.mesh import CaBackend
from gossamer.pki.backends import VaultProvider
from gossamer.pki.backends.base import InvalidCaMaterial, SecretReader
from gossamer.pki.certs import new_csr, new_key
from tests.openbao import OpenBao

PKI = "pki-payments"


CORP = "pki-corp"


NOW = dt.datetime.now(dt.UTC)


HOUR = dt.timedelta(hours=1)


def root_of(bao: OpenBao, mount: str = PKI) -> x509.Certificate:
    pem = bao.client().read(f"{mount}/cert/ca_chain")["data"]["ca_chain"]
    return next(c for c in x509.load_pem_x509_certificates(pem.encode())
                if c.subject == c.issuer)


def reader(secrets: dict[str, bytes]) -> SecretReader:
    async def read(name: str) -> bytes:
        if name not in secrets:
            raise InvalidCaMaterial(f"secret {name!r} does not exist")
        return secrets[name]
    return read


def backend(bao: OpenBao, auth: dict[str, Any], *, mode: str = "intermediate",
            pki: str = PKI, role: str = "workloads", tls: dict[str, Any] | None = None,
            address: str | None = None) -> CaBackend:
    return CaBackend.model_validate({"name": "vault-1", "type": "vault", "conf": {
        "address": address or bao.address, "pki": pki, "role": role, "mode": mode,
        "auth": auth, "tls": tls if tls is not None else {"caCertSecretRef": "vault-ca"}}})


def token_provider(bao: OpenBao, policies: list[str], **kw: Any) -> VaultProvider:
    secrets = {"vault-ca": bao.ca_pem, "vault-token": bao.create_token(policies).encode()}
    return VaultProvider("payments", backend(bao, {"token": {"secretRef": "vault-token"}}, **kw),
                         reader(secrets))


def zone_csr() -> x509.CertificateSigningRequest:
    return new_csr(new_key(), "zone west payments")

