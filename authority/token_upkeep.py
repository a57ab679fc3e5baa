"""What the control plane that signs tokens keeps tidy: revocations, keys, older stores.

``TokenUpkeep`` runs at the signer (the global, or a standalone zone) only:

* each ``TokenRevocation`` is deleted once the token it revokes would have expired (the
  zones see the delete through the sync). The rows' expiries are held in a heap fed by
  the store's watch, and one timer waits for the earliest: no polling, and 100,000 rows
  cost one listing at start;
* a deleted Mesh takes its dataplane signing keys and ``TokenTrust`` with it, as it took
  its key Secrets before keys became GlobalSecrets: a Mesh created again under the same
  name must not accept the old mesh's tokens. Keys older than the Mesh now stored (or
  all, when there is none) go;
* each ``TokenTrust`` follows its signing keys: a signing-key GlobalSecret created,
  changed or deleted (by ``rotate``, by hand, by the pruning above) republishes the
  TokenTrust of its purpose and mesh, so a deleted key stops verifying in every zone
  within a sync round trip, not at the next issue. A Mesh created publishes its
  ``dataplane.<mesh>`` trust (making its first key), so its tokens verify at the zones
  from the first one issued.

``migrate_token_state`` moves what older versions stored: dataplane signing keys kept as
mesh Secrets (which the sync copied to every zone) become GlobalSecrets, so tokens
already issued keep verifying, and the Secrets are deleted (which removes them from the
zones); revocations kept as one JSON secret per purpose become one row each. The zones
held those keys, so a fresh key signs from then on and the moved ones only verify the
tokens already issued: delete them once those tokens have expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import time
from datetime import datetime

from authority.token_authority import TokenAuthority, key_secret_name, key_selector
from gossamer.errors import Conflict, GossamerError, InvalidResource, NotFound
from gossamer.model.base import Resource
from gossamer.model.labels import KEY_LABEL, KID_LABEL, MESH_LABEL, OLD_REVOCATIONS_LABEL
from gossamer.model.tokenrevocation import TokenRevocationSpec
from gossamer.model.tokentrust import trust_name
from gossamer.resources import ResourceManager
from gossamer.store.follow import follow
from gossamer.tokens import DATAPLANE, ZONE, Clock

log = logging.getLogger(__name__)

# The timer re-reads the wall clock at least this often, so a clock that jumps is
# followed within the hour; nothing is read from the store when it fires with nothing due.
MAX_WAIT = 3600.0


class TokenUpkeep:
    def __init__(self, manager: ResourceManager, clock: Clock = time.time) -> None:
        self._manager = manager
        self._clock = clock
        self._expiry: dict[str, tuple[int, int]] = {}  # row name -> (expires_at, version)
        self._heap: list[tuple[int, str]] = []          # may hold stale entries
        self._meshes: set[str] = set()                  # to prune keys of
        self._trusts: set[tuple[str, str]] = set()      # (purpose, mesh) to republish
        self._wake = asyncio.Event()

    async def run(self) -> None:
        follower = asyncio.create_task(
            follow(self._manager.store, ["TokenRevocation", "Mesh", "GlobalSecret"],
                   self._reset,
                   self._changed), name="token-upkeep-follow")
        try:
            await self._loop()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    def _reset(self, resources: list[Resource]) -> None:
        self._expiry.clear()
        self._heap.clear()
        self._meshes.add("")  # "" asks for every mesh that has keys (see _prune_all)
        for res in resources:
            self._changed(res, False)

    def _changed(self, res: Resource, deleted: bool) -> None:
        if res.type == "GlobalSecret":
            purpose = res.labels.get(KEY_LABEL)
            if purpose not in (ZONE, DATAPLANE):
                return  # not a signing key: nothing to do, no wake-up
            self._trusts.add((purpose, res.labels.get(MESH_LABEL, "")))
        elif res.type == "Mesh":
            self._meshes.add(res.name)
            if not deleted:
                self._trusts.add((DATAPLANE, res.name))
        elif deleted:
            self._expiry.pop(res.name, None)
        elif isinstance(res.spec, TokenRevocationSpec):
            self._expiry[res.name] = (res.spec.expires_at, res.meta.version)
            heapq.heappush(self._heap, (res.spec.expires_at, res.name))
        self._wake.set()

    async def _loop(self) -> None:
        delay = 0.05
        while True:
            self._wake.clear()
            try:
                await self._prune_meshes()
                await self._republish()
                await self._drop_expired()
            except GossamerError as exc:  # the store failed: try again shortly
                log.warning("token upkeep failed, retrying in %.2fs: %s", delay, exc.detail)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_wait()):
                    await self._wake.wait()

    def _next_wait(self) -> float | None:
        while self._heap and self._expiry.get(self._heap[0][1], (None,))[0] != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale: deleted or revoked again with a new expiry
        if not self._heap:
            return None
        return min(max(self._heap[0][0] - self._clock(), 0.0), MAX_WAIT)

    async def _drop_expired(self) -> None:
        now = self._clock()
        while self._next_wait() is not None and self._heap[0][0] <= now:
            _, name = heapq.heappop(self._heap)
            _, version = self._expiry.pop(name)
            with contextlib.suppress(NotFound, Conflict):  # gone, or revoked again since
                await self._manager.store.delete("TokenRevocation", name, "", version)

    async def _prune_meshes(self) -> None:
        while self._meshes:
            mesh = self._meshes.pop()
            if mesh:
                await prune_mesh_keys(self._manager, mesh)
            else:
                page = await self._manager.list("GlobalSecret", None, {KEY_LABEL: DATAPLANE})
                self._meshes.update(r.labels[MESH_LABEL] for r in page.items
                                    if r.labels.get(MESH_LABEL))


    async def _republish(self) -> None:
        """Bring each TokenTrust whose keys or Mesh changed in step with its keys. A
        mesh's trust only while the Mesh exists: a deleted one's is the pruning's."""
        while self._trusts:
            purpose, mesh = self._trusts.pop()
            if purpose == DATAPLANE:
                if not mesh:
                    continue  # a dataplane key without a mesh label signs nothing
                try:
                    await self._manager.get("Mesh", mesh)
                except NotFound:
                    continue
            try:
                await TokenAuthority(self._manager, purpose, mesh).keys()
            except GossamerError:
                self._trusts.add((purpose, mesh))  # the loop retries after a pause
                raise


async def prune_mesh_keys(manager: ResourceManager, mesh: str) -> None:
    """Delete the dataplane signing keys of ``mesh`` made before the Mesh now stored
    (all of them when there is none), then bring its TokenTrust in step."""
    try:
        born: datetime | None = (await manager.get("Mesh", mesh)).meta.creation_time
        exists = True
    except NotFound:
        born, exists = None, False
    page = await manager.list("GlobalSecret", None, key_selector(DATAPLANE, mesh))
    stale = [r for r in page.items if not exists or (
        born is not None and r.meta.creation_time is not None and r.meta.creation_time < born)]
    for res in stale:
        with contextlib.suppress(NotFound):
            await manager.store.delete("GlobalSecret", res.name)
    if len(stale) == len(page.items):
        with contextlib.suppress(NotFound):
            await manager.store.delete("TokenTrust", trust_name(DATAPLANE, mesh))
    elif stale:
        await TokenAuthority(manager, DATAPLANE, mesh).keys()
    if stale:
        log.info("deleted %d dataplane signing keys of mesh %r, which was deleted",
                 len(stale), mesh)


async def migrate_token_state(manager: ResourceManager, clock: Clock = time.time) -> None:
    """Move signing keys and revocations stored by older versions (see the module
    docstring). Idempotent: a start interrupted half way finishes at the next."""
    page = await manager.list("Secret", None, {KEY_LABEL: DATAPLANE})
    by_mesh: dict[str, list[Resource]] = {}
    for res in sorted(page.items, key=_created):  # oldest first
        by_mesh.setdefault(res.mesh, []).append(res)
    for mesh, secrets in sorted(by_mesh.items()):
        for res in secrets:
            kid = res.labels.get(KID_LABEL) or res.name.rsplit("-", 1)[-1]
            await manager.apply(Resource(
                type="GlobalSecret", name=key_secret_name(DATAPLANE, mesh, kid),
                labels={**key_selector(DATAPLANE, mesh), KID_LABEL: kid}, spec=res.spec))
        # Every zone held these keys: a fresh one signs from now on, before the Secrets
        # go, so a start interrupted here still rotates at the next.
        await TokenAuthority(manager, DATAPLANE, mesh, clock=clock).rotate()
        for res in secrets:
            with contextlib.suppress(NotFound):
                await manager.store.delete("Secret", res.name, mesh)
        log.warning("moved the dataplane signing keys of mesh %r out of its Secrets, which "
                    "every zone held, and added a fresh signing key: delete the moved keys "
                    "(GlobalSecrets %s) once the tokens they signed have expired", mesh,
                    ", ".join(key_secret_name(DATAPLANE, mesh, r.labels.get(KID_LABEL)
                                              or r.name.rsplit("-", 1)[-1])
                              for r in secrets))
    for kind, purpose in (("Secret", DATAPLANE), ("GlobalSecret", ZONE)):
        old = await manager.list(kind, None, {OLD_REVOCATIONS_LABEL: purpose})
        for res in old.items:
            await _migrate_revocations(manager, res, purpose, clock)


async def _migrate_revocations(manager: ResourceManager, res: Resource, purpose: str,
                               clock: Clock) -> None:
    authority = TokenAuthority(manager, purpose, res.mesh, clock=clock)
    try:
        entries = json.loads(getattr(res.spec, "value", lambda: b"{}")())
        items = list(entries.items()) if isinstance(entries, dict) else []
    except ValueError:
        items = []
    for token_id, expires_at in items:
        try:
            await authority.revoke(str(token_id), expires_at if isinstance(expires_at, int)
                                   else None)
        except InvalidResource:
            continue  # expired already, or an entry older versions should not have stored
    await manager.store.delete(res.type, res.name, res.mesh)
    log.info("moved %d %s token revocations to TokenRevocation rows", len(items), purpose)


def _created(res: Resource) -> tuple[float, str]:
    ts = res.meta.creation_time
    return (ts.timestamp() if ts else 0.0, res.name)
