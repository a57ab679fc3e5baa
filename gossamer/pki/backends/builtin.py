"""The builtin backend: a root CA generated and kept by the control plane owning the mesh.

The root is made the first time it is needed, with the backend's ``caCert`` key type and
lifetime, and kept as a GlobalSecret (JSON ``{cert, key}``) — a kind that never leaves the
control plane holding it: the global in a federation, the zone itself when standalone.
Regenerating the root raises the generation; each (mesh, backend, generation) has its own
secret, named by ``gossamer.pki.names.root_secret_name`` (never shared by two tuples). A
root stored under its old name (``ca-<mesh>-<backend>[-g<N>]``, which two tuples could
share) is still found, checked to be this tuple's (its mesh label and its subject), and
moved: created under the new name first, deleted under the old one after, so a crash in
between leaves a copy, never no key. Two callers never make two roots: the secret is
created, never overwritten, and whoever loses the race reads the winner's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID

from gossamer.errors import AlreadyExists, Conflict, NotFound
from gossamer.model.base import Resource
from gossamer.model.fields import duration_seconds
from gossamer.model.labels import CA_LABEL
from gossamer.model.mesh import BuiltinConf, CaBackend
from gossamer.model.secret import SecretSpec
from gossamer.pki.backends.base import CaBackendError, LocalCa, SignedChain
from gossamer.pki.certs import ZONE_CA_NAME, KeyPair, new_root_ca, sign_intermediate
from gossamer.pki.names import legacy_root_secret_name, root_secret_name
from gossamer.resources import ResourceManager

log = logging.getLogger(__name__)

ROOT_PATH_LENGTH = 1  # the root signs zone intermediates, which sign workloads


def secret_json(name: str, labels: dict[str, str], data: dict[str, str]) -> Resource:
    blob = json.dumps(data, sort_keys=True).encode()
    return Resource(type="GlobalSecret", name=name, labels=labels,
                    spec=SecretSpec(data=base64.b64encode(blob).decode()))


async def read_secret_json(manager: ResourceManager, name: str) -> dict[str, str] | None:
    try:
        res = await manager.get("GlobalSecret", name)
    except NotFound:
        return None
    return secret_data(res)


def secret_data(res: Resource) -> dict[str, str]:
    if not isinstance(res.spec, SecretSpec):
        raise TypeError(f"GlobalSecret {res.name} has a foreign spec")
    data = json.loads(res.spec.value())
    return {str(k): str(v) for k, v in data.items()}


async def adopt_legacy(manager: ResourceManager, name: str, old_name: str,
                       ours: Callable[[Resource], bool]) -> dict[str, str] | None:
    """Move a GlobalSecret stored under its old name ``old_name`` to ``name``, if there is
    one and ``ours`` says it belongs to the caller (an old name could be another tuple's).

    Create under the new name, then delete the old one: a crash in between leaves two
    copies, never none. Returns the secret's data, or None if there is nothing to move."""
    try:
        old = await manager.get("GlobalSecret", old_name)
    except NotFound:
        return None
    if not ours(old):
        return None
    moved = Resource(type="GlobalSecret", name=name, labels=dict(old.labels), spec=old.spec)
    with contextlib.suppress(AlreadyExists, Conflict):
        await manager.store.create(moved)  # a racing caller moved it first: same data
    with contextlib.suppress(NotFound):
        await manager.delete("GlobalSecret", old_name)
    log.info("GlobalSecret %s moved to %s", old_name, name)
    return await read_secret_json(manager, name)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BuiltinProvider:
    type = "builtin"
    issues_workloads = False

    def __init__(self, manager: ResourceManager, mesh: str, backend: CaBackend,
                 generation: int = 0, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        if generation < 0:
            raise ValueError("a root generation is 0 or more")
        conf = backend.conf if isinstance(backend.conf, BuiltinConf) else BuiltinConf()
        self.mesh = mesh
        self.backend = backend.name
        self.generation = generation
        self.secret_name = root_secret_name(mesh, backend.name, generation)
        self._manager = manager
        self._key_type = conf.ca_cert.key_type
        self._lifetime = dt.timedelta(seconds=duration_seconds(conf.ca_cert.expiration))
        self._clock = clock
        self._root: KeyPair | None = None
        self._lock = asyncio.Lock()

    async def root_pair(self) -> KeyPair:
        """The root with its key: read from the store, or made now if there is none."""
        async with self._lock:
            if self._root is None:
                self._root = await self._load_or_create()
            return self._root

    async def local_ca(self) -> LocalCa:
        root = await self.root_pair()
        return LocalCa(ca=root, chain=(), roots=(root.cert,))

    async def roots(self) -> Sequence[x509.Certificate]:
        return [(await self.root_pair()).cert]

    async def sign_intermediate(self, csr: x509.CertificateSigningRequest, now: dt.datetime,
                                lifetime: dt.timedelta, common_name: str = ZONE_CA_NAME
                                ) -> SignedChain:
        root = await self.root_pair()
        try:
            # capped at the root's expiry
            cert = sign_intermediate(root, csr, now, lifetime, common_name)
        except ValueError as exc:
            raise CaBackendError(f"{self._who()}: {exc}") from None
        return SignedChain(certificate=cert, chain=(), roots=(root.cert,))

    async def sign_workload(self, csr: x509.CertificateSigningRequest, uris: Sequence[str],
                            now: dt.datetime, lifetime: dt.timedelta) -> SignedChain:
        raise CaBackendError(f"{self._who()} does not issue workload certificates: the "
                             "zones sign them with their intermediates")

    async def check(self) -> None:
        root = await self.root_pair()
        if root.cert.not_valid_after_utc <= self._clock():
            raise CaBackendError(f"{self._who()}: the root expired on "
                                 f"{root.cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
                                 "regenerate it")

    async def delete_root(self) -> None:
        """Remove the root and its key (a retired root's key must not linger)."""
        async with self._lock:
            self._root = None
            with contextlib.suppress(NotFound):
                await self._manager.delete("GlobalSecret", self.secret_name)
            legacy = legacy_root_secret_name(self.mesh, self.backend, self.generation)
            with contextlib.suppress(NotFound):
                if self._is_ours(await self._manager.get("GlobalSecret", legacy)):
                    await self._manager.delete("GlobalSecret", legacy)

    async def close(self) -> None:
        return None

    # -- internals ------------------------------------------------------------------------

    def _who(self) -> str:
        return f"mesh {self.mesh}, backend {self.backend}"

    async def _load_or_create(self) -> KeyPair:
        stored = await self._read()
        if stored is not None:
            return stored
        root = new_root_ca(self._subject(), self._clock(), self._lifetime,
                           key_type=self._key_type, path_length=ROOT_PATH_LENGTH)
        res = secret_json(self.secret_name, {CA_LABEL: self.mesh}, {
            "cert": root.cert_pem().decode(), "key": root.key_pem().decode()})
        try:
            # Create, never apply: an update would replace a root another caller (another
            # task or control plane) has just made and perhaps already signed with.
            await self._manager.store.create(res)
        except (AlreadyExists, Conflict):
            stored = await self._read()
            if stored is None:
                raise
            return stored
        return root

    async def _read(self) -> KeyPair | None:
        stored = await read_secret_json(self._manager, self.secret_name)
        if stored is None:
            legacy = legacy_root_secret_name(self.mesh, self.backend, self.generation)
            stored = await adopt_legacy(self._manager, self.secret_name, legacy,
                                        self._is_ours)
        if stored is None:
            return None
        return KeyPair.from_pem(stored["cert"].encode(), stored["key"].encode())

    def _subject(self) -> str:
        """The root's common name: names never contain spaces, so it tells the tuple
        apart where the old secret names did not (up to its 64 characters)."""
        label = f"Gossamer mesh {self.mesh} {self.backend}"
        return label if self.generation == 0 else f"{label} g{self.generation}"

    def _is_ours(self, res: Resource) -> bool:
        """Whether a root stored under an old, shareable name is this tuple's: its mesh
        label and its subject say so."""
        if res.labels.get(CA_LABEL) != self.mesh:
            return False
        try:
            cert = x509.load_pem_x509_certificate(secret_data(res)["cert"].encode())
        except (KeyError, TypeError, ValueError):
            return False
        names = [n.value for n in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        # Roots made before generations existed are named after their mesh only.
        first = [f"Gossamer mesh {self.mesh}"[:64]] if self.generation == 0 else []
        return any(names == [cn] for cn in [self._subject()[:64], *first])
