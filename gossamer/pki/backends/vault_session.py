"""Requests to Vault (or OpenBao) for one vault backend of a mesh, through ``hvac``: the
TLS context, the logins, the worker threads, and the translation of every foreign error.
``gossamer.pki.backends.vault`` builds its PKI operations on ``VaultSession.call``.

``hvac`` is synchronous: each request runs in one of the session's own few worker threads
with a bounded connect and read timeout, so a Vault that does not answer costs seconds,
never a hung task, and cannot take the threads the rest of the process uses. TLS is
verified by default, against ``tls.caCertSecretRef`` when given (else the system's CAs),
with ``tls.serverName`` as SNI and expected name; every TLS setting lives in one
``ssl.SSLContext`` the transport hands to each connection, so neither requests' defaults
nor the environment (``REQUESTS_CA_BUNDLE``, ``VAULT_*``) change what is trusted. A client
key is loaded into that context from a private temporary file removed at once.

The client token is cached; on 403 the session logs in again once (reading the token
secret again for token auth) and retries. Foreign errors end here: ``CaUnreachable`` for
no answer, a timeout or 5xx; ``CaRefused`` for everything Vault (or its TLS certificate)
says no with, worded for the platform engineer who has to fix the policy or the role. What
they quote from elsewhere (Vault's error text, a proxy's HTML page, an exception) is cut
to its first ``MAX_TEXT`` characters, saying so.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import requests
import requests.adapters

from gossamer.model.mesh import VaultConf
from gossamer.pki.backends.base import (
    CaBackendError,
    CaRefused,
    CaUnreachable,
    InvalidCaMaterial,
    SecretReader,
)

TIMEOUT = 5.0          # seconds, for connecting and for each read
CERT_AUTH_MOUNT = "cert"
WORKERS = 4            # threads per session: requests to Vault at once
MAX_TEXT = 300         # characters of a foreign text (a body, an exception) in an error


# -- TLS ------------------------------------------------------------------------------------


def tls_context(ca_pem: bytes | None, skip_verify: bool,
                client: tuple[bytes, bytes] | None) -> ssl.SSLContext:
    """What every connection to Vault trusts and presents (the key stays in memory)."""
    context = ssl.create_default_context(cadata=ca_pem.decode() if ca_pem else None)
    if skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client is not None:
        with tempfile.TemporaryDirectory(prefix="gossamer-vault-") as tmp:
            os.chmod(tmp, 0o700)
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            for path, data in ((cert, client[0]), (key, client[1])):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            context.load_cert_chain(cert, key)
    return context


class _Transport(requests.adapters.HTTPAdapter):
    """Connections use ``context`` and nothing else: requests' ``verify``/``cert`` and
    its CA bundle are ignored (they would add trust anchors to the context)."""

    def __init__(self, context: ssl.SSLContext, server_name: str | None) -> None:
        self._context = context
        self._server_name = server_name
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(
            self, request: requests.PreparedRequest, verify: Any,
            cert: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        host, _ = super().build_connection_pool_key_attributes(request, verify, None)
        pool: dict[str, Any] = {
            "ssl_context": self._context,
            "cert_reqs": ("CERT_NONE" if self._context.verify_mode == ssl.CERT_NONE
                          else "CERT_REQUIRED")}
        if self._server_name:
            pool["server_hostname"] = self._server_name
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        return None  # the context already says what to trust


# -- errors ---------------------------------------------------------------------------------


def cut(text: str, limit: int = MAX_TEXT) -> str:
    """The start of ``text`` on one line, at most ``limit`` characters and a note of what
    was cut: hvac hands over a whole non-JSON body (a load balancer's HTML page) as the
    error, which must not become a MeshTrust message or a log line of many kilobytes."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters cut)"


def _vault_text(exc: hvac.exceptions.VaultError) -> str:
    errors = exc.errors if isinstance(exc.errors, list) else [str(exc.args[0] if exc.args else "")]
    text = "; ".join(re.sub(r"\s+", " ", str(e)).strip() for e in errors if str(e).strip())
    return cut(re.sub(r"^\d+ errors? occurred: \* ", "", text)) or "(no error text)"


def _network_reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, requests.Timeout | TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(exc)
    ssl_error = re.search(r"\[SSL: [A-Z_]+\] (.*?)\s*\(_ssl\.c", text)
    if ssl_error:
        return cut(ssl_error.group(1).rstrip("."))
    for needle, reason in (("Connection refused", "connection refused"),
                           ("Name or service not known", "the host name does not resolve"),
                           ("No address associated", "the host name does not resolve"),
                           ("Network is unreachable", "network unreachable"),
                           ("No route to host", "no route to host"),
                           ("Connection reset", "the connection was reset"),
                           ("RemoteDisconnected", "the connection was closed")):
        if needle in text:
            return reason
    return cut(text)


@dataclass(frozen=True)
class _Request:
    """What a failed request was, to word its error."""

    method: str
    path: str
    login: str = ""   # the auth method, for a login request


def translate(exc: BaseException, who: str, address: str, req: _Request, conf: VaultConf,
              timeout: float = TIMEOUT) -> CaBackendError:
    """The ``CaBackendError`` for an exception from hvac/requests (pure)."""
    at = f"Vault at {address}"
    if isinstance(exc, requests.exceptions.SSLError):
        anchor = ("tls.caCertSecretRef" if conf.tls and conf.tls.ca_cert_secret_ref
                  else "the system's CA certificates (set tls.caCertSecretRef)")
        return CaRefused(f"{who}: TLS with {at} failed: {_network_reason(exc, timeout)}; its "
                         f"certificate must verify against {anchor} for the name "
                         f"{_expected_name(address, conf)!r} (tls.serverName)")
    if isinstance(exc, requests.RequestException | TimeoutError | OSError):
        return CaUnreachable(f"{who}: {at} does not answer: {_network_reason(exc, timeout)}")
    if not isinstance(exc, hvac.exceptions.VaultError):
        return CaBackendError(f"{who}: {at}: {cut(str(exc))}")
    text = _vault_text(exc)
    if isinstance(exc, hvac.exceptions.InternalServerError | hvac.exceptions.VaultDown
                  | hvac.exceptions.BadGateway | hvac.exceptions.VaultNotInitialized
                  | hvac.exceptions.RateLimitExceeded):
        return CaUnreachable(f"{who}: {at} cannot serve {req.path} now: {text}")
    if req.login:
        return CaRefused(f"{who}: {at} refused the {req.login} login: {text}; check the "
                         "credentials and that the auth method is enabled")
    if "unknown role" in text:
        return CaRefused(f"{who}: role {conf.role!r} does not exist in PKI mount {conf.pki!r} "
                         f"of {at}")
    if isinstance(exc, hvac.exceptions.Forbidden):
        return CaRefused(f"{who}: {at} denied {req.method.upper()} {req.path}: the token's "
                         f"policy does not allow it ({text})")
    if isinstance(exc, hvac.exceptions.InvalidPath):
        return CaRefused(f"{who}: {at} has nothing at {req.path} (is {conf.pki!r} a PKI "
                         f"secrets engine mount?): {text}")
    return CaRefused(f"{who}: {at} refused {req.method.upper()} {req.path}: {text}")


def _expected_name(address: str, conf: VaultConf) -> str:
    if conf.tls and conf.tls.server_name:
        return conf.tls.server_name
    host = re.sub(r"^https?://", "", address).split("/")[0]
    return host.rsplit(":", 1)[0] if not host.endswith("]") else host



# -- the session ----------------------------------------------------------------------------


class VaultSession:
    """Requests to the Vault of one backend: a logged-in ``hvac`` client, its connections
    and its worker threads (their names start with ``threads``), made on first use and dropped by
    ``release`` until the next request. ``who`` names the backend in every error."""

    def __init__(self, who: str, threads: str, conf: VaultConf, read_secret: SecretReader,
                 timeout: float = TIMEOUT) -> None:
        self.who = who
        self.conf = conf
        self.address = conf.address.rstrip("/")
        self._threads = threads
        self._read_secret = read_secret
        self._timeout = timeout
        self._executor: ThreadPoolExecutor | None = None
        # The client of the last login: None before the first request, after ``release``
        # and after a failed login or TLS error (built again from the secrets as they are).
        self.client: hvac.Client | None = None
        self._logins = 0          # raised by each login; a 403 re-logs in once per login
        self._login_lock = asyncio.Lock()

    async def call(self, method: str, path: str,
                   data: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request, logged in; on 403 log in again once and retry. Returns the
        response's ``data`` ({} if it has none)."""
        client = await self._logged_in()
        logins = self._logins
        req = _Request(method, path)
        try:
            return await self._run(req, _request, client, method, path, data)
        except CaRefused as refused:
            if not isinstance(refused.__cause__, hvac.exceptions.Forbidden):
                raise
        await self._login(after=logins)  # the token may have expired or been revoked
        client = await self._logged_in()
        try:
            return await self._run(req, _request, client, method, path, data)
        except CaRefused as again:
            if isinstance(again.__cause__, hvac.exceptions.Forbidden):
                await self._explain_forbidden(client)
            raise

    def release(self) -> None:
        """Drop the connections and threads without a loop: nothing here waits, neither on
        Vault nor on a request in flight (it finishes in its thread; its connection is not
        reused)."""
        client, executor = self.client, self._executor
        self.client = self._executor = None
        if client is not None:
            client.adapter.close()    # closes idle sockets; does not wait on Vault
        if executor is not None:
            executor.shutdown(wait=False)

    async def _run(self, req: _Request, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(WORKERS, self._threads)
        loop = asyncio.get_running_loop()
        try:
            # asyncio.timeout, not wait_for: before 3.12 wait_for can swallow a cancellation
            # that arrives together with the result.
            async with asyncio.timeout(4 * self._timeout):
                return await loop.run_in_executor(self._executor, fn, *args)
        except (TimeoutError, requests.RequestException, hvac.exceptions.VaultError,
                OSError) as exc:
            if req.login or isinstance(exc, requests.exceptions.SSLError):
                # Build the client again next time, from the secrets as they are then: the
                # CA, client certificate or credentials may have been fixed meanwhile.
                self.client = None
            raise translate(exc, self.who, self.address, req, self.conf,
                            self._timeout) from exc

    async def _explain_forbidden(self, client: hvac.Client) -> None:
        """After a second 403: tell a token Vault does not accept from a denied path."""
        if self.conf.auth.token is None:
            return
        try:
            await self._run(_Request("get", "auth/token/lookup-self"), _request, client,
                            "get", "auth/token/lookup-self", None)
        except CaRefused as exc:
            if isinstance(exc.__cause__, hvac.exceptions.Forbidden):
                raise CaRefused(
                    f"{self.who}: Vault at {self.address} does not accept the token from "
                    f"secret {self.conf.auth.token.secret_ref!r} (token auth): it is unknown, "
                    "expired or revoked") from None

    async def _logged_in(self) -> hvac.Client:
        if self.client is None or not self.client.token:
            await self._login(after=self._logins)
        assert self.client is not None
        return self.client

    async def _login(self, after: int) -> None:
        async with self._login_lock:
            if self._logins != after and self.client is not None and self.client.token:
                return  # another task logged in meanwhile
            client = await self._new_client() if self.client is None else self.client
            auth = self.conf.auth
            if auth.token is not None:
                client.token = (await self._read_secret(auth.token.secret_ref)).decode().strip()
            elif auth.app_role is not None:
                role = auth.app_role
                secret_id = (await self._read_secret(role.secret_id.secret_ref)).decode().strip()
                await self._run(_Request("post", f"auth/{role.mount}/login", "AppRole"),
                                _login_approle, client, role.mount, role.role_id, secret_id)
            else:
                await self._run(_Request("post", f"auth/{CERT_AUTH_MOUNT}/login",
                                         "TLS certificate"), _login_cert, client)
            self.client = client
            self._logins += 1

    async def _new_client(self) -> hvac.Client:
        tls = self.conf.tls
        ca_pem = await self._read_secret(tls.ca_cert_secret_ref) if tls and \
            tls.ca_cert_secret_ref else None
        client_pair = None
        if self.conf.auth.tls is not None:
            client_pair = (await self._read_secret(self.conf.auth.tls.client_cert_secret_ref),
                           await self._read_secret(self.conf.auth.tls.client_key_secret_ref))
        try:
            context = tls_context(ca_pem, bool(tls and tls.skip_verify), client_pair)
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise InvalidCaMaterial(f"{self.who}: the TLS material for Vault does not load "
                                    f"(tls.caCertSecretRef, auth.tls): {cut(str(exc))}") from None
        session = requests.Session()
        session.trust_env = False     # no proxy or CA bundle from the environment
        session.mount("https://", _Transport(context, tls.server_name if tls else None))
        session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
        return hvac.Client(url=self.address, token="", session=session,
                           timeout=(self._timeout, self._timeout),
                           namespace=self.conf.namespace or None)


# Blocking parts, run in worker threads.


def _request(client: hvac.Client, method: str, path: str,
             data: dict[str, Any] | None) -> dict[str, Any]:
    kwargs = {"json": data} if data is not None else {}
    result = client.adapter.request(method, f"/v1/{path}", **kwargs)
    if not isinstance(result, dict):
        return {}  # 204: nothing to read
    body = result.get("data")
    return dict(body) if isinstance(body, dict) else {}


def _login_approle(client: hvac.Client, mount: str, role_id: str, secret_id: str) -> None:
    client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=mount)


def _login_cert(client: hvac.Client) -> None:
    client.adapter.login(f"/v1/auth/{CERT_AUTH_MOUNT}/login", json={})
