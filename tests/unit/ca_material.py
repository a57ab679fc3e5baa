"""What the CA backend tests share: CAs built with ``cryptography`` directly (``make_ca``,
which can leave out basicConstraints, drop keyCertSign, set a path length, …) and their PEM
form, the builtin backend on a memory store, the secret and Mesh documents a provided
backend reads, and ``refused`` (the error a checked apply gives).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gossamer.errors import InvalidResource
from gossamer.model.mesh import CaBackend
from gossamer.model.registry import parse_document
from gossamer.pki.certs import KeyPair, PrivateKey
from gossamer.resources import ResourceManager

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


HOUR = dt.timedelta(hours=1)


DAY = dt.timedelta(days=1)


def make_ca(name: str, issuer: KeyPair | None = None, *, key: PrivateKey | None = None,
            ca: bool | None = True, path_length: int | None = None,
            key_cert_sign: bool | None = True, not_before: dt.datetime = NOW - DAY,
            not_after: dt.datetime = NOW + 365 * DAY) -> KeyPair:
    """A certificate with exactly the extensions asked for (``ca=None``: no
    basicConstraints; ``key_cert_sign=None``: no keyUsage), self-signed without issuer."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
    if key_cert_sign is not None:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
            crl_sign=key_cert_sign, encipher_only=False, decipher_only=False), critical=True)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return KeyPair(cert, key)


def pem(*pairs: KeyPair) -> bytes:
    return b"".join(p.cert_pem() for p in pairs)


def builtin(name: str = "ca-1", **conf: Any) -> CaBackend:
    return CaBackend.model_validate({"name": name, "type": "builtin", "conf": conf})


def secret_doc(name: str, data: bytes, mesh: str = "payments") -> dict[str, Any]:
    return {"type": "Secret", "name": name, "mesh": mesh,
            "data": base64.b64encode(data).decode()}


def global_secret_doc(name: str, data: bytes) -> dict[str, Any]:
    """Where a provided CA's key lives: never synced to the zones."""
    return {"type": "GlobalSecret", "name": name, "data": base64.b64encode(data).decode()}


def provided(name: str = "files", cert: str = "ca-cert", key: str = "ca-key") -> dict[str, Any]:
    return {"name": name, "type": "provided",
            "conf": {"cert": {"secretRef": cert}, "key": {"secretRef": key}}}


def mesh_doc(*backends: dict[str, Any], enabled: str | None = None) -> dict[str, Any]:
    mtls: dict[str, Any] = {"backends": list(backends)}
    if enabled:
        mtls["enabledBackend"] = enabled
    return {"type": "Mesh", "name": "payments", "mtls": mtls}


async def refused(manager: ResourceManager, *docs: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidResource) as exc:
        if len(docs) == 1:
            await manager.apply(parse_document(docs[0]))
        else:
            await manager.apply_batch(list(docs))
    return [(e.path, e.message) for e in exc.value.field_errors]

