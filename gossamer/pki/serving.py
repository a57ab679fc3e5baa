"""TLS material a control plane serves with: a self-signed CA and a server certificate.

At first start a control plane makes ``<data-dir>/tls/ca.pem`` (the file clients pass as
``--global-ca`` / ``--cp-ca``), ``ca-key.pem`` and ``server.pem``/``server-key.pem`` for
the names it is reached by. Provided files (``--tls-cert``/``--tls-key``) replace the
server pair. The server certificate is renewed when it nears expiry or its names change.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from gossamer.pki.certs import KeyPair, new_leaf, new_root_ca, write_public, write_secret

CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class ServingTls:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        return self.ca_file.read_bytes(), self.cert_file.read_bytes(), self.key_file.read_bytes()


def default_names() -> tuple[list[str], list[str]]:
    dns = ["localhost", socket.gethostname()]
    ips = ["127.0.0.1", "::1"]
    return dns, ips


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return ({str(d) for d in san.get_values_for_type(x509.DNSName)}
            | {str(i) for i in san.get_values_for_type(x509.IPAddress)})


def ensure_serving_tls(directory: Path, common_name: str, hosts: list[str],
                       now: dt.datetime | None = None) -> ServingTls:
    """Create or refresh the CA and server certificate in ``directory``."""
    now = now or dt.datetime.now(dt.UTC)
    tls = ServingTls(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    ca_key_file = directory / "ca-key.pem"
    if tls.ca_file.exists() and ca_key_file.exists():
        ca = KeyPair.from_pem(tls.ca_file.read_bytes(), ca_key_file.read_bytes())
    else:
        ca = new_root_ca(f"{common_name} CA", now, CA_LIFETIME, path_length=0)
        write_secret(ca_key_file, ca.key_pem())
        write_public(tls.ca_file, ca.cert_pem())
    dns, ips = default_names()
    for host in hosts:
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(host)
    wanted = set(dns) | {str(ipaddress.ip_address(i)) for i in ips}
    if tls.cert_file.exists() and tls.key_file.exists():
        cert = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
        fresh = cert.not_valid_after_utc - now > RENEW_BEFORE
        if fresh and wanted <= _names_of(cert) and cert.issuer == ca.cert.subject:
            return tls
    leaf = new_leaf(ca, common_name, now, SERVER_LIFETIME, dns=sorted(set(dns)),
                    ips=sorted(set(ips)), client=False)
    write_secret(tls.key_file, leaf.key_pem())
    write_public(tls.cert_file, leaf.cert_pem())
    return tls
