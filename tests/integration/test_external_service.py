"""MeshExternalService through a transparent sidecar: real Envoy, nft, curl, TLS.

The lab of ``test_transparent_proxy`` (a workload ``web`` in its own network namespace
with the redirect installed, its sidecar transparent, the zone CP in-process), and an
HTTPS server outside the mesh that speaks nothing but TLS, with a certificate for
``httpbin.outside`` from a test CA. A MeshExternalService ``httpbin`` names it
(``match: {port: 80, protocol: http}``, TLS enabled, the CA in a mesh Secret). From web's
namespace, plain ``curl http://httpbin.extsvc.mesh/``:

- is answered by the outside server, over TLS that web's sidecar originated (the server
  records each request's TLS version and SNI);
- fails (503) once the external service names another CA, and with a SAN the server's
  certificate does not carry, and passes with mode SkipAll;
- negotiates the TLS versions the external service allows;
- gets 504 when a MeshTimeout on the external service is shorter than the handler;
- has its requests rewritten by a MeshHTTPRoute on the external service, and aborted by
  a MeshFaultInjection on it.

Every generated resource also passes ``envoy --mode validate``. Skipped loudly without
root, network namespaces or nft (as the lab is).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gossamer.model.labels import EXTERNAL_SERVICE_LABEL
from gossamer.pki.certs import new_leaf, new_root_ca
from proxy.context import ExternalTls
from proxy.envoy import generate
from tests.integration.test_envoy_accepts import envoy, secrets, static_bootstrap, validate
from tests.integration.test_transparent_proxy import Lab, lab
from tests.unit.envoy_external_inputs import (
    ACCESS_LOG,
    CA_PEM,
    CIRCUIT_BREAKER,
    FAULT,
    HEALTH_CHECK,
    LOAD_BALANCING,
    RETRY,
    ROUTE,
    TIMEOUT,
    external_ctx,
    httpbin,
)
from tests.unit.envoy_scenarios import as_data
from tests.unit.test_envoy_transparent import WEB_TRANSPARENT
from tests.waiting import eventually

__all__ = ["envoy", "lab", "secrets"]  # fixtures
NAME = "httpbin.outside"
MAX_DELAY_MS = 5000


class Seen:
    """What the outside server saw: (path, TLS version, SNI) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        self.clients: list[str] = []  # the client certificates' common names, if asked


@contextlib.contextmanager
def https_server(address: str, directory: Path, client_ca: bytes | None = None
                 ) -> Iterator[tuple[int, bytes, Seen]]:
    """A TLS-only server for ``NAME`` (from a fresh test CA) that answers ``outside`` and
    ``/slow/<ms>`` after that delay; yields its port, the CA's PEM and what it saw. With
    ``client_ca`` it requires a client certificate from that CA."""
    now = dt.datetime.now(dt.UTC)
    ca = new_root_ca("outside test CA", now, dt.timedelta(hours=1))
    leaf = new_leaf(ca, NAME, now, dt.timedelta(hours=1), dns=[NAME], client=False)
    (directory / "server.pem").write_bytes(leaf.cert_pem() + ca.cert_pem())
    (directory / "server.key").write_bytes(leaf.key_pem())
    (directory / "server.key").chmod(0o600)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca.decode())
    seen = Seen()
    snis: dict[int, str | None] = {}

    def on_sni(sock: ssl.SSLSocket | ssl.SSLObject, name: str | None,
               _: ssl.SSLContext) -> None:
        snis[id(sock)] = name  # the SSLSocket the handler gets as its request

    context.sni_callback = on_sni

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            sock = self.request
            assert isinstance(sock, ssl.SSLSocket)  # the server speaks nothing else
            seen.requests.append((self.path, sock.version() or "", snis.get(id(sock))))
            peer = sock.getpeercert() or {}
            seen.clients += [value for rdn in peer.get("subject", ()) for key, value in rdn
                             if key == "commonName"]
            if self.path.startswith("/slow/"):
                time.sleep(min(int(self.path.rsplit("/", 1)[1]), MAX_DELAY_MS) / 1000)
            self.send_response(200)
            self.send_header("content-length", "7")
            self.end_headers()
            self.wfile.write(b"outside")

        def log_message(self, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a caller that timed out (504) closed its end mid-answer

    server = Server((address, 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1]), ca.cert_pem(), seen
    finally:
        server.shutdown()
        server.server_close()


def external(address: str, port: int, verification: dict[str, Any]) -> dict[str, Any]:
    return {"type": "MeshExternalService", "mesh": "default", "name": "httpbin", "spec": {
        "match": {"port": 80, "protocol": "http"},
        "endpoints": [{"address": address, "port": port}],
        "tls": {"enabled": True, "version": {"min": "TLS12"}, "verification": verification}}}


def secret(name: str, data: bytes) -> dict[str, Any]:
    return {"type": "Secret", "mesh": "default", "name": name,
            "data": base64.b64encode(data).decode()}


def timeout(request: str) -> dict[str, Any]:
    return {"type": "MeshTimeout", "mesh": "default", "name": "httpbin-fast", "spec": {
        "to": [{"targetRef": {"kind": "MeshExternalService", "name": "httpbin"},
                "default": {"http": {"requestTimeout": request}}}]}}


@pytest.mark.asyncio(loop_scope="module")
async def test_http_to_the_external_service_leaves_over_tls_originated_by_the_sidecar(
        lab: Lab, tmp_path: Path) -> None:
    host = lab.net.host_ip
    with https_server(host, tmp_path) as (port, ca_pem, seen):
        # Reached directly (passthrough) in plaintext, the server answers nothing.
        assert lab.net.curl(f"http://{host}:{port}/")[0] is None
        good = external(host, port, {"serverName": NAME, "caCert": {"secretRef": "outside-ca"}})
        await lab.apply(secret("outside-ca", ca_pem), good)
        await eventually(lambda: any(r.labels.get(EXTERNAL_SERVICE_LABEL) == "httpbin"
                                     for r in lab.cp.state.of_kind("VirtualIP", "default")),
                         timeout=30, what="the external service's VIP")
        await lab.converged()
        try:
            status, body = lab.net.curl("http://httpbin.extsvc.mesh/hello")
            assert (status, body) == (200, "outside")
            assert ("/hello", "TLSv1.3", NAME) in seen.requests

            # A MeshTimeout on the external service applies to it.
            await lab.apply(timeout("300ms"))
            assert lab.net.curl("http://httpbin.extsvc.mesh/slow/2000")[0] == 504
            assert lab.net.curl("http://httpbin.extsvc.mesh/slow/10")[0] == 200
            await lab.delete(timeout("300ms"))

            # A MeshHTTPRoute on the external service rewrites what web sends it (/v1 to
            # /api/v1), and a MeshFaultInjection on it aborts its requests at web's sidecar.
            route, fault = yaml.safe_load(ROUTE), yaml.safe_load(FAULT)
            await lab.apply(route)
            assert lab.net.curl("http://httpbin.extsvc.mesh/v1/hello") == (200, "outside")
            assert ("/api/v1/hello", "TLSv1.3", NAME) in seen.requests
            await lab.apply(fault)
            assert lab.net.curl("http://httpbin.extsvc.mesh/aborted")[0] == 418
            await lab.delete(fault, route)
            assert not any(path == "/aborted" for path, _, _ in seen.requests)

            # Another CA: the sidecar refuses the server's certificate.
            other = new_root_ca("another CA", dt.datetime.now(dt.UTC), dt.timedelta(hours=1))
            await lab.apply(external(host, port, {"serverName": NAME, "caCert": {
                "inline": other.cert_pem().decode()}}))
            assert lab.net.curl("http://httpbin.extsvc.mesh/other-ca")[0] == 503
            # The right CA but a name the certificate does not carry: refused too.
            await lab.apply(external(host, port, {
                "serverName": NAME, "subjectAltNames": [{"value": "elsewhere.outside"}],
                "caCert": {"secretRef": "outside-ca"}}))
            assert lab.net.curl("http://httpbin.extsvc.mesh/other-name")[0] == 503
            assert not any(path.startswith("/other") for path, _, _ in seen.requests)

            # SkipAll: any chain, any name (so SkipCA, the name over any chain, is
            # refused when applied: Envoy's ACCEPT_UNTRUSTED let a wrong name through).
            await lab.apply(external(host, port, {"mode": "SkipAll"}))
            assert lab.net.curl("http://httpbin.extsvc.mesh/skip-all") == (200, "outside")

            # The version bounds reach the handshake.
            tls12 = external(host, port, {"serverName": NAME,
                                          "caCert": {"secretRef": "outside-ca"}})
            tls12["spec"]["tls"]["version"] = {"max": "TLS12"}
            await lab.apply(tls12)
            assert lab.net.curl("http://httpbin.extsvc.mesh/tls12") == (200, "outside")
            assert ("/tls12", "TLSv1.2", NAME) in seen.requests

            await lab.apply(good)
            assert lab.net.curl("http://httpbin.extsvc.mesh/again") == (200, "outside")
        finally:
            await lab.delete(good, secret("outside-ca", b""))


def test_envoy_accepts_the_external_service_resources(envoy: Path, secrets: list[dict[str, Any]],
                                                      tmp_path: Path) -> None:
    """Both outbound kinds (VIP listeners, capture chains), every verification mode,
    HTTP/2 upstream, host names and IPs: a real Envoy builds them all."""
    contexts = [external_ctx(TIMEOUT, RETRY, CIRCUIT_BREAKER, HEALTH_CHECK, ACCESS_LOG),
                external_ctx(ROUTE, FAULT, LOAD_BALANCING),
                external_ctx(TIMEOUT, dataplane=WEB_TRANSPARENT)]
    contexts += [external_ctx(service=httpbin(ExternalTls(
        mode=mode, ca_pem=CA_PEM if mode in ("Secured", "SkipSAN") else b"",
        subject_alt_names=(("Prefix", "httpbin"),), min_version="TLS12"), protocol))
        for mode, protocol in (("SkipSAN", "http2"), ("SkipAll", "grpc"))]
    for ctx in contexts:
        validate(envoy, static_bootstrap(as_data(generate(ctx)), secrets), tmp_path)
