"""TLS material a control plane serves with: a self-signed CA and a server certificate.

At first start a control plane makes ``<data-dir>/tls/ca.pem`` (the file clients pass as
``--global-ca`` / ``--cp-ca``), ``ca-key.pem`` and ``server.pem``/``server-key.pem`` for
the names it is reached by: ``localhost``, the host name, every address of the host's
interfaces (``gossamer.netinfo``) and the ``--tls-host`` names, so that a zone, a sidecar
or the CLI calling it by any of its IPs verifies it on the first run. Provided files
(``--tls-cert``/``--tls-key``) replace the server pair. The server certificate is issued
again when it nears expiry or lacks a name it should have (an interface got a new address
since the last start, a new ``--tls-host``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from gossamer.netinfo import interface_addresses
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


def serving_names(hosts: list[str], host_name: str,
                  addresses: list[str]) -> tuple[list[str], list[str]]:
    """The DNS names and IPs (each sorted, no duplicates) a serving certificate carries:
    ``localhost``, ``host_name``, the loopback and interface ``addresses`` and ``hosts``
    (``--tls-host``: names or IPs)."""
    dns = {"localhost", host_name}
    ips = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    for host in [*addresses, *hosts]:
        try:
            ips.add(ipaddress.ip_address(host))
        except ValueError:
            dns.add(host)
    return sorted(d for d in dns if d), [str(i) for i in sorted(ips, key=_ip_order)]


def _ip_order(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    return ip.version, int(ip)


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return ({str(d) for d in san.get_values_for_type(x509.DNSName)}
            | {str(i) for i in san.get_values_for_type(x509.IPAddress)})


def ensure_serving_tls(directory: Path, common_name: str, hosts: list[str],
                       now: dt.datetime | None = None,
                       addresses: Callable[[], list[str]] = interface_addresses) -> ServingTls:
    """Create or refresh the CA and server certificate in ``directory``; ``addresses``
    reads the host's interface addresses (tests give their own)."""
    now = now or dt.datetime.now(dt.UTC)
    tls = ServingTls(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    ca_key_file = directory / "ca-key.pem"
    if tls.ca_file.exists() and ca_key_file.exists():
        ca = KeyPair.from_pem(tls.ca_file.read_bytes(), ca_key_file.read_bytes())
    else:
        ca = new_root_ca(f"{common_name} CA", now, CA_LIFETIME, path_length=0)
        write_secret(ca_key_file, ca.key_pem())
        write_public(tls.ca_file, ca.cert_pem())
    dns, ips = serving_names(hosts, socket.gethostname(), addresses())
    if tls.cert_file.exists() and tls.key_file.exists():
        cert = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
        fresh = cert.not_valid_after_utc - now > RENEW_BEFORE
        if fresh and set(dns) | set(ips) <= _names_of(cert) and cert.issuer == ca.cert.subject:
            return tls
    leaf = new_leaf(ca, common_name, now, SERVER_LIFETIME, dns=dns, ips=ips, client=False)
    write_secret(tls.key_file, leaf.key_pem())
    write_public(tls.cert_file, leaf.cert_pem())
    return tls
