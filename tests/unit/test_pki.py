"""CAs, intermediates, SPIFFE leaves and the control planes' serving certificates."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from gossamer.pki.certs import (
    CsrRefused,
    KeyPair,
    check_csr,
    new_csr,
    new_key,
    new_leaf,
    new_root_ca,
    sign_intermediate,
    sign_leaf,
    spiffe_id,
    uri_sans,
)
from gossamer.pki.serving import ensure_serving_tls

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def test_chain_root_intermediate_workload() -> None:
    root = new_root_ca("mesh default", NOW, 3650 * DAY)
    zone_key = new_key()
    inter_cert = sign_intermediate(root, new_csr(zone_key, "zone east"), NOW, 30 * DAY)
    inter = KeyPair(inter_cert, zone_key)
    workload_key = new_key()
    leaf = sign_leaf(inter, new_csr(workload_key, "backend", [spiffe_id("default", "evil")]),
                     NOW, DAY, uris=[spiffe_id("default", "backend")])

    inter_cert.verify_directly_issued_by(root.cert)
    leaf.verify_directly_issued_by(inter_cert)
    bc = inter_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    # The signer decides the identity: the SAN the CSR asked for is ignored.
    assert uri_sans(leaf) == ["spiffe://default/backend"]
    assert leaf.not_valid_after_utc == NOW + DAY
    # A leaf never outlives its issuer.
    long = sign_leaf(inter, new_csr(new_key(), "x"), NOW, 365 * DAY)
    assert long.not_valid_after_utc == inter_cert.not_valid_after_utc


def test_tampered_csr_is_refused() -> None:
    csr = new_csr(new_key(), "backend")
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF
    bad = x509.load_der_x509_csr(bytes(der))
    root = new_root_ca("r", NOW, DAY)
    with pytest.raises(ValueError, match="signature"):
        sign_leaf(root, bad, NOW, DAY)


def _csr(key: object, subject: str = "evil") -> x509.CertificateSigningRequest:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    edwards = (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)
    algorithm = None if isinstance(key, edwards) else hashes.SHA256()
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(
        key, algorithm)  # type: ignore[arg-type]


@pytest.mark.parametrize(("key", "named"), [
    (rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA-1024"),
    (dsa.generate_private_key(key_size=2048), "DSA-2048"),
    (ec.generate_private_key(ec.SECP521R1()), "EC secp521r1"),
    (ec.generate_private_key(ec.SECP256K1()), "EC secp256k1"),
    (ed448.Ed448PrivateKey.generate(), "Ed448"),
])
def test_only_strong_common_keys_are_signed(key: object, named: str) -> None:
    root = new_root_ca("r", NOW, DAY)
    for sign in (lambda c: sign_leaf(root, c, NOW, DAY, uris=["spiffe://m/s"]),
                 lambda c: sign_intermediate(root, c, NOW, DAY)):
        with pytest.raises(CsrRefused, match=f"the CSR's key is {named}: only EC P-256"):
            sign(_csr(key))


@pytest.mark.parametrize("key", [
    ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
    ed25519.Ed25519PrivateKey.generate(),
    rsa.generate_private_key(public_exponent=65537, key_size=2048)])
def test_the_subject_is_the_signers_never_the_csrs(key: object) -> None:
    root = new_root_ca("r", NOW, DAY)
    check_csr(_csr(key))
    leaf = sign_leaf(root, _csr(key), NOW, DAY, uris=["spiffe://m/s"])
    assert leaf.subject.rfc4514_string() == "O=Gossamer"
    inter = sign_intermediate(root, _csr(key), NOW, DAY, "Gossamer zone east mesh m")
    assert inter.subject.rfc4514_string() == "CN=Gossamer zone east mesh m,O=Gossamer"
    # The control planes' own leaves keep the name their issuer gives them.
    assert new_leaf(root, "gossamer-cp", NOW, DAY, dns=["cp"]).cert.subject == x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gossamer"),
        x509.NameAttribute(NameOID.COMMON_NAME, "gossamer-cp")])


def test_serving_tls_is_created_once_and_private_files_are_0600(tmp_path: Path) -> None:
    tls = ensure_serving_tls(tmp_path / "tls", "global", ["cp.example.com"], NOW)
    for path in (tls.key_file, tmp_path / "tls" / "ca-key.pem"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = tls.cert_file.read_bytes()
    again = ensure_serving_tls(tmp_path / "tls", "global", ["cp.example.com"], NOW)
    assert again.cert_file.read_bytes() == first
    # A new name re-issues the server certificate under the same CA.
    ca = tls.ca_file.read_bytes()
    ensure_serving_tls(tmp_path / "tls", "global", ["10.1.2.3"], NOW)
    assert tls.cert_file.read_bytes() != first and tls.ca_file.read_bytes() == ca
    # Close to expiry: renewed.
    later = NOW + dt.timedelta(days=340)
    ensure_serving_tls(tmp_path / "tls", "global", ["10.1.2.3"], later)
    cert = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
    assert cert.not_valid_after_utc > later + dt.timedelta(days=300)


async def test_serving_tls_handshake_verifies(tmp_path: Path) -> None:
    tls = ensure_serving_tls(tmp_path / "tls", "global", [], dt.datetime.now(dt.UTC))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tls.cert_file, tls.key_file)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        good = ssl.create_default_context(cafile=str(tls.ca_file))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=good,
                                                       server_hostname="localhost")
        assert await reader.read() == b"hi"
        writer.close()
        other = ensure_serving_tls(tmp_path / "other", "x", [], dt.datetime.now(dt.UTC))
        wrong = ssl.create_default_context(cafile=str(other.ca_file))
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", port, ssl=wrong,
                                          server_hostname="localhost")
    finally:
        server.close()
