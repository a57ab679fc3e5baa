"""What every replica of a control plane must hold alike: the admin token and the CA of
its TLS ports.

Several replicas on one store are one control plane to its clients: one CLI context (one
admin token) and one CA file (a zone's ``--global-ca``, a sidecar's ``--cp-ca``) must
work against any of them. The global's replicas share them, and so do a zone CP's
replicas on a PostgreSQL zone store (each zone store holds its own). Both live in the
store as GlobalSecrets (never synced to zones, readable with the admin token only), and
each replica copies them into its ``--data-dir`` at start (0600 for the secret parts), where
the CLI on the host and the TLS servers read them.

The first replica to store one wins (``Create``: a racing replica gets ``AlreadyExists``
and takes the stored one). A replica that brings older state of its own (a data dir from
a single-replica install) stores it when the store has none, so an upgrade keeps the
token and CA already handed out; when the store has one, the store's replaces the local
file. Each replica still issues its own serving certificate from the shared CA, for the
names it is reached by.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

from gossamer.api.auth import TOKEN_FILE, load_or_create_admin_token
from gossamer.errors import AlreadyExists, NotFound
from gossamer.model.base import Resource
from gossamer.model.secret import SecretSpec
from gossamer.pki.certs import write_public, write_secret
from gossamer.pki.serving import ServingTls, ensure_serving_tls
from gossamer.resources import ResourceManager

log = logging.getLogger(__name__)

ADMIN_TOKEN_SECRET = "gossamer-admin-token"
SERVING_CA_SECRET = "gossamer-serving-ca"
SHARED_LABEL = "gossamer.io/shared"  # marks what the replicas share (value: its purpose)


async def _stored(manager: ResourceManager, name: str) -> bytes | None:
    try:
        res = await manager.get("GlobalSecret", name)
    except NotFound:
        return None
    assert isinstance(res.spec, SecretSpec)
    return res.spec.value()


async def _share(manager: ResourceManager, name: str, purpose: str, mine: bytes) -> bytes:
    """The stored value of ``name``: ours if none was stored (we store it), else theirs."""
    found = await _stored(manager, name)
    if found is not None:
        return found
    try:
        await manager.store.create(Resource(type="GlobalSecret", name=name,
                                            labels={SHARED_LABEL: purpose},
                                            spec=SecretSpec(data=base64.b64encode(mine).decode())))
    except AlreadyExists:  # another replica stored its own first: take that one
        found = await _stored(manager, name)
        assert found is not None
        return found
    return mine


async def share_admin_token(manager: ResourceManager, data_dir: Path) -> str:
    """The replicas' admin token, also in ``data_dir/admin-token`` (0600)."""
    mine = load_or_create_admin_token(data_dir)
    token = (await _share(manager, ADMIN_TOKEN_SECRET, "admin-token",
                          mine.encode())).decode().strip()
    if token != mine:
        log.info("admin token: using the one the other replicas share (from the store)")
        write_secret(data_dir / TOKEN_FILE, (token + "\n").encode())
    return token


async def share_serving_ca(manager: ResourceManager, tls_dir: Path) -> bool:
    """Put the shared CA in ``tls_dir`` (``ca.pem``, ``ca-key.pem``) before the serving
    certificate is made from it; this replica's own CA is stored if none is. True if
    the files in ``tls_dir`` were replaced.

    A CA replaced here drops the server certificate it had issued, so that
    ``ensure_serving_tls`` issues one from the shared CA (it compares issuer names only,
    and every replica's CA has the same name).
    """
    ca_file, key_file = tls_dir / "ca.pem", tls_dir / "ca-key.pem"
    mine = (json.dumps({"cert": ca_file.read_text(), "key": key_file.read_text()}).encode()
            if ca_file.exists() and key_file.exists() else None)
    if mine is None:
        found = await _stored(manager, SERVING_CA_SECRET)
        if found is None:
            return False  # the first replica: ensure_serving_tls makes it; the next call
            # stores it
        shared = found
    else:
        shared = await _share(manager, SERVING_CA_SECRET, "serving-ca", mine)
    if shared == mine:
        return False
    pair = json.loads(shared)
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_secret(key_file, pair["key"].encode())
    write_public(ca_file, pair["cert"].encode())
    (tls_dir / "server.pem").unlink(missing_ok=True)
    log.info("serving TLS: using the CA the other replicas share (from the store)")
    return True


async def shared_serving_tls(manager: ResourceManager, tls_dir: Path, common_name: str,
                             hosts: list[str]) -> ServingTls:
    """This replica's serving certificate, issued from the CA every replica shares."""
    await share_serving_ca(manager, tls_dir)
    tls = ensure_serving_tls(tls_dir, common_name, hosts)
    if await share_serving_ca(manager, tls_dir):  # another replica's CA came first
        tls = ensure_serving_tls(tls_dir, common_name, hosts)
    return tls


async def share_credentials(manager: ResourceManager, data_dir: Path, common_name: str,
                            hosts: list[str]) -> str:
    """Both at once, in ``data_dir`` before anything reads them: the shared admin token
    (returned) and the serving certificate from the shared CA (a zone CP's replicas)."""
    token = await share_admin_token(manager, data_dir)
    await shared_serving_tls(manager, data_dir / "tls", common_name, hosts)
    return token
