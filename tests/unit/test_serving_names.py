"""The names a control plane's own serving certificate carries (``gossamer.pki.serving``)
and the interface addresses they come from (``gossamer.netinfo``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509

from gossamer.netinfo import interface_addresses, parse_if_inet6
from gossamer.pki.serving import ensure_serving_tls, serving_names

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
fd000000000000000000000000000002 04 40 00 82     eth0
20010db8000000000000000000000005 05 40 00 00     eth1
not a line
zz000000000000000000000000000002 04 40 00 82     eth0
"""


def test_if_inet6_is_read_without_link_local_addresses() -> None:
    assert parse_if_inet6(IF_INET6) == ["::1", "fd00::2", "2001:db8::5"]
    assert parse_if_inet6("") == []


def test_the_interfaces_of_this_host_include_loopback() -> None:
    found = interface_addresses()
    assert "127.0.0.1" in found
    assert len(found) == len(set(found))
    for address in found:
        ipaddress.ip_address(address)  # every one an IP


def test_the_serving_names_are_the_defaults_the_interfaces_and_the_tls_hosts() -> None:
    dns, ips = serving_names(["cp.example.com", "198.51.100.7"], "vm",
                             ["127.0.0.1", "192.0.2.2", "fd00::2", "192.0.2.2"])
    assert dns == ["cp.example.com", "localhost", "vm"]
    assert ips == ["127.0.0.1", "192.0.2.2", "198.51.100.7", "::1", "fd00::2"]


def _sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ({str(i) for i in san.get_values_for_type(x509.IPAddress)}
            | set(san.get_values_for_type(x509.DNSName)))


def test_a_new_interface_address_issues_the_certificate_again(tmp_path: Path) -> None:
    addresses = ["127.0.0.1", "192.0.2.2"]
    tls = ensure_serving_tls(tmp_path, "zone", [], NOW, addresses=lambda: addresses)
    first = tls.cert_file.read_bytes()
    assert "192.0.2.2" in _sans(tls.cert_file)
    # Same addresses at the next start: the same certificate.
    ensure_serving_tls(tmp_path, "zone", [], NOW, addresses=lambda: addresses)
    assert tls.cert_file.read_bytes() == first
    # The host moved to another address: issued again, naming it, under the same CA.
    ca = tls.ca_file.read_bytes()
    addresses = ["127.0.0.1", "203.0.113.9"]
    ensure_serving_tls(tmp_path, "zone", [], NOW, addresses=lambda: addresses)
    assert tls.cert_file.read_bytes() != first and tls.ca_file.read_bytes() == ca
    assert "203.0.113.9" in _sans(tls.cert_file)
    assert "192.0.2.2" not in _sans(tls.cert_file)
