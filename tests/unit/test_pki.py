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
from cryptography.hazmat.primitives import serialization

from gossamer.pki.certs import (
    KeyPair,
    new_csr,
    new_key,
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
