"""The builtin backend: a root CA generated and kept by the control plane owning the mesh.

The root is made the first time it is needed, with the backend's ``caCert`` key type and
lifetime, and kept as a GlobalSecret (JSON ``{cert, key}``) — a kind that never leaves the
control plane holding it: the global in a federation, the zone itself when standalone.
Generation 0 lives at ``ca-<mesh>-<backend>`` (the name roots always had, so existing
stores keep theirs); regenerating the root raises the generation, and generation N > 0
lives at ``ca-<mesh>-<backend>-g<N>``. Two callers never make two roots: the secret is
created, never overwritten, and whoever loses the race reads the winner's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
from collections.abc import Callable, Sequence

from cryptography import x509

from gossamer.errors import AlreadyExists, Conflict, NotFound
from gossamer.model.base import Resource
from gossamer.model.fields import duration_seconds
from gossamer.model.mesh import BuiltinConf, CaBackend
from gossamer.model.secret import SecretSpec
from gossamer.pki.backends.base import CaBackendError, LocalCa, SignedChain
from gossamer.pki.certs import KeyPair, new_root_ca, sign_intermediate
from gossamer.resources import ResourceManager

CA_LABEL = "gossamer.io/ca"
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
    if not isinstance(res.spec, SecretSpec):
        raise TypeError(f"GlobalSecret {name} has a foreign spec")
    data = json.loads(res.spec.value())
    return {str(k): str(v) for k, v in data.items()}


def root_secret_name(mesh: str, backend: str, generation: int) -> str:
    base = f"ca-{mesh}-{backend}"
    return base if generation == 0 else f"{base}-g{generation}"


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
                                lifetime: dt.timedelta) -> SignedChain:
        root = await self.root_pair()
        try:
            cert = sign_intermediate(root, csr, now, lifetime)  # capped at the root's expiry
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

    async def close(self) -> None:
        return None

    # -- internals ------------------------------------------------------------------------

    def _who(self) -> str:
        return f"mesh {self.mesh}, backend {self.backend}"

    async def _load_or_create(self) -> KeyPair:
        stored = await self._read()
        if stored is not None:
            return stored
        label = f"Gossamer mesh {self.mesh} {self.backend}"
        root = new_root_ca(label if self.generation == 0 else f"{label} g{self.generation}",
                           self._clock(), self._lifetime, key_type=self._key_type,
                           path_length=ROOT_PATH_LENGTH)
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
            return None
        return KeyPair.from_pem(stored["cert"].encode(), stored["key"].encode())
