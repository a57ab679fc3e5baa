"""The vault CA backend without a network: its errors translated for the platform engineer
(a foreign error text cut to its start), and a provider replaced by a new configuration is
closed. The backend itself is tested against a real OpenBao in
``tests/integration/vault/``.
"""

from __future__ import annotations

import socket
import threading

import hvac.exceptions
import pytest
import requests

from gossamer.model.mesh import CaBackend, VaultConf
from gossamer.model.registry import parse_document
from gossamer.pki.backends import provider_for
from gossamer.pki.backends.base import CaBackendError, CaRefused, CaUnreachable
from gossamer.pki.backends.vault_session import _Request, translate
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from tests.unit.ca_material import secret_doc

VAULT = VaultConf.model_validate({"address": "https://vault.internal:8200", "pki": "pki-payments",
                                  "role": "zones", "auth": {"token": {"secretRef": "t"}}})


WHO = "mesh payments, backend vault-1"


ADDRESS = "https://vault.internal:8200"


def test_vault_errors_are_translated_for_the_platform_engineer() -> None:
    req = _Request("post", "pki-payments/sign/zones")

    def t(exc: BaseException, r: _Request = req) -> CaBackendError:
        return translate(exc, WHO, ADDRESS, r, VAULT)

    down = t(hvac.exceptions.VaultDown(errors=["Vault is sealed"]))
    assert isinstance(down, CaUnreachable)
    assert str(down) == (f"{WHO}: Vault at {ADDRESS} cannot serve pki-payments/sign/zones now: "
                         "Vault is sealed")
    timeout = t(requests.exceptions.ReadTimeout("read timed out"))
    assert isinstance(timeout, CaUnreachable)
    assert str(timeout) == f"{WHO}: Vault at {ADDRESS} does not answer: no answer within 5 s"
    role = t(hvac.exceptions.InvalidRequest(errors=["unknown role: zones"]))
    assert isinstance(role, CaRefused)
    assert str(role) == (f"{WHO}: role 'zones' does not exist in PKI mount 'pki-payments' of "
                         f"Vault at {ADDRESS}")
    other = t(hvac.exceptions.InvalidRequest(errors=["common name not allowed"]))
    assert isinstance(other, CaRefused) and str(other).endswith(": common name not allowed")
    denied = t(hvac.exceptions.Forbidden(errors=["1 error occurred:\n\t* permission denied\n\n"]))
    assert str(denied) == (f"{WHO}: Vault at {ADDRESS} denied POST pki-payments/sign/zones: "
                           "the token's policy does not allow it (permission denied)")
    login = t(hvac.exceptions.InvalidRequest(errors=["invalid role or secret ID"]),
              _Request("post", "auth/approle/login", "AppRole"))
    assert isinstance(login, CaRefused)
    assert "refused the AppRole login: invalid role or secret ID" in str(login)


def test_a_long_foreign_error_text_is_cut_to_its_start() -> None:
    # A load balancer in front of Vault answers 502 with its own HTML page, which hvac
    # hands over whole as the error text.
    page = ("<html><head><title>502 Bad Gateway</title></head><body>\n"
            + "<p>The upstream server is not available.</p>\n" * 500 + "</body></html>")
    req = _Request("post", "pki-payments/root/sign-intermediate")
    error = translate(hvac.exceptions.BadGateway(page), WHO, ADDRESS, req, VAULT)
    assert isinstance(error, CaUnreachable)
    text = str(error)
    assert text.startswith(f"{WHO}: Vault at {ADDRESS} cannot serve "
                           "pki-payments/root/sign-intermediate now: <html><head><title>502 Bad "
                           "Gateway</title></head><body> <p>The upstream server")
    assert text.endswith(" more characters cut)")
    assert len(text) < 500
    # The same for the other ways a foreign text reaches an error.
    long = "x" * 10_000
    for exc in (hvac.exceptions.InvalidRequest(errors=[long]),
                requests.exceptions.ConnectionError(long), RuntimeError(long)):
        text = str(translate(exc, WHO, ADDRESS, req, VAULT))
        assert len(text) < 500 and text.endswith(" more characters cut)"), text


async def test_a_vault_provider_replaced_by_a_new_configuration_is_closed() -> None:
    manager = ResourceManager(MemoryStore())
    await manager.apply(parse_document({"type": "Mesh", "name": "replaced"}))
    await manager.apply(parse_document(secret_doc("vault-token", b"s.token", mesh="replaced")))
    with socket.socket() as probe:      # a port nothing listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = {"address": f"https://127.0.0.1:{port}", "pki": "pki", "role": "zones",
            "auth": {"token": {"secretRef": "vault-token"}}}

    def backend(**changed: str) -> CaBackend:
        return CaBackend.model_validate({"name": "vault-1", "type": "vault",
                                         "conf": {**conf, **changed}})

    old = provider_for(manager, "replaced", backend())
    with pytest.raises(CaUnreachable):
        await old.roots()               # starts its worker thread and connection pool
    workers = [t for t in threading.enumerate() if t.name.startswith("vault-replaced-")]
    assert workers
    assert provider_for(manager, "replaced", backend()) is old
    new = provider_for(manager, "replaced", backend(role="other-role"))
    assert new is not old
    for worker in workers:
        worker.join(timeout=5)
    assert not [t.name for t in workers if t.is_alive()]

