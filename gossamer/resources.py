"""The resource manager: the one place writes are checked before they reach a store.

The HTTP API, the CLI's batch apply and each control plane's own parts go through it, so
the rules live once. The sync does not: what a zone or the global accepted from the other
end is written straight to the store (``sync.applier``), since the sending side's manager
already checked it and the receiver keeps it under its own names. The rules: a mesh-scoped
resource needs its mesh to exist; applying an identical document is a no-op (no version
bump, no event); a Mesh that still has Dataplanes cannot be deleted, and deleting one
removes its policies and secrets; a control plane may forbid writes to kinds another owner
holds (``WriteGuard``, used by zone CPs).

Writes that belong together are one store transaction (``Store.write``): a batch apply
writes all its documents or none, and a Mesh goes with its contents. Everything that can
refuse such a write is checked before it, so a refusal leaves the store as it was.

``checks`` look deeper than a document's own fields before it is stored (a Mesh's CA
material, for one): each raises ``InvalidResource`` to refuse the write, which then leaves
the stored document as it was. A check sees the other documents of the same batch, so a
Mesh and the Secrets it refers to can be applied together.
"""

from __future__ import annotations

import asyncio
import builtins
import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gossamer.errors import Conflict, FieldError, InvalidResource, NotFound
from gossamer.model.base import KindDescriptor, Resource
from gossamer.model.registry import REGISTRY, Registry, parse_document
from gossamer.store import codec
from gossamer.store.base import (
    Create,
    Delete,
    ListQuery,
    Page,
    Store,
    Update,
    WriteOp,
    op_key,
    same_content,
)
from gossamer.store.view import Read, ReadPage, StoreView

MAX_BATCH = 10_000
PARSE_SLICE = 100  # documents validated between two turns of the event loop (~5 ms)

# Raises Conflict (or Forbidden) when this control plane may not write `res`.
WriteGuard = Callable[[KindDescriptor, Resource | None], None]


# The other documents of the batch a write belongs to, by ``Resource.key``.
Batch = Mapping[tuple[str, str, str], Resource]

# Runs before ``res`` is stored (created or changed); raises InvalidResource to refuse it.
ApplyCheck = Callable[["ResourceManager", Resource, Batch], Awaitable[None]]


def allow_all(desc: KindDescriptor, res: Resource | None) -> None:
    return None


def deny_system(desc: KindDescriptor, res: Resource | None) -> None:
    """The guard of an API: system kinds (a mesh CA's state) are the control planes'."""
    if desc.system:
        raise Conflict(f"{desc.name} resources are written by the control planes only: "
                       "change the Mesh (mtls.enabledBackend) or run `gossamer mesh "
                       "rotate-ca` instead")


class Action(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    VALID = "valid"


@dataclass(frozen=True)
class Applied:
    resource: Resource
    action: Action


class ResourceManager:
    def __init__(self, store: Store, registry: Registry = REGISTRY,
                 guard: WriteGuard = allow_all, checks: Sequence[ApplyCheck] = (),
                 view: StoreView | None = None) -> None:
        self.store = store
        self.view = view  # what ``read`` answers from, when the process keeps one
        self.registry = registry
        self._guard = guard
        self._checks = tuple(checks)

    async def get(self, kind: str, name: str, mesh: str = "") -> Resource:
        return await self.store.get(self.registry.get(kind).name, name, mesh)

    async def read(self, kind: str, name: str, mesh: str = "") -> Read:
        """One resource for a client: from the view when there is one (fresh, or marked
        stale while the store does not answer: ``gossamer.store.view``), else the store.
        ``resource`` is None when there is none."""
        kind = self.registry.get(kind).name
        if self.view is not None:
            return await self.view.read(kind, name, mesh)
        try:
            return Read(await self.store.get(kind, name, mesh))
        except NotFound:
            return Read(None)

    async def read_list(self, kind: str, mesh: str | None = None,
                        labels: Mapping[str, str] | None = None, limit: int | None = None,
                        page_token: str | None = None) -> ReadPage:
        """``list`` for a client: from the view when there is one, as ``read``."""
        desc = self.registry.get(kind)
        query = ListQuery(desc.name, mesh if desc.mesh_scoped else None, labels, limit,
                          page_token)
        if self.view is not None:
            return await self.view.list(query)
        return ReadPage(await self.store.list(query))

    async def get_as_applied(self, kind: str, name: str, mesh: str = "",
                             batch: Batch | None = None) -> Resource:
        """The resource as a write in ``batch`` would see it: the batch's document if it
        holds one, else the stored one (NotFound if neither)."""
        kind = self.registry.get(kind).name
        pending = (batch or {}).get((kind, mesh, name))
        return pending if pending is not None else await self.store.get(kind, name, mesh)

    async def list(self, kind: str, mesh: str | None = None,
                   labels: Mapping[str, str] | None = None, limit: int | None = None,
                   page_token: str | None = None) -> Page:
        desc = self.registry.get(kind)
        return await self.store.list(ListQuery(desc.name, mesh if desc.mesh_scoped else None,
                                               labels, limit, page_token))

    def parse_one(self, doc: Any) -> tuple[Resource, int | None]:
        """One document and the ``version`` it asks to update from."""
        return parse_document(doc, self.registry), _version_of(doc)

    def parse_batch(self, docs: Iterable[Any]) -> builtins.list[tuple[Resource, int | None]]:
        """Validate every document before anything is stored; all problems at once.

        Returns each resource with the ``version`` its document asked to update from.
        """
        parse = _BatchParse(self)
        for i, doc in enumerate(docs):
            parse.feed(i, doc)
        return parse.result()

    async def parse_batch_sliced(self, docs: Iterable[Any]
                                 ) -> builtins.list[tuple[Resource, int | None]]:
        """``parse_batch`` that gives the event loop a turn every ``PARSE_SLICE``
        documents: validating 10,000 policies takes about a second of CPU, which would
        otherwise hold every other request (``/healthz`` included) for as long. Slices
        rather than a thread: validation is pure Python and would hold the GIL anyway."""
        parse = _BatchParse(self)
        for i, doc in enumerate(docs):
            parse.feed(i, doc)
            if i % PARSE_SLICE == PARSE_SLICE - 1:
                await asyncio.sleep(0)
        return parse.result()

    async def apply_batch(self, docs: Iterable[Any],
                          dry_run: bool = False) -> builtins.list[Applied]:
        parsed = await self.parse_batch_sliced(docs)
        # The batch's own Meshes, and those found stored: each mesh is read once.
        meshes = {r.name for r, _ in parsed if r.type == "Mesh"}
        batch = {r.key: r for r, _ in parsed}
        errors: builtins.list[FieldError] = []
        for i, (res, _) in enumerate(parsed):
            self._guard(self.registry.get(res.type), res)
            try:
                if res.mesh and res.mesh not in meshes:
                    await self._require_mesh(res.mesh)
                    meshes.add(res.mesh)
                await self._check(res, batch)
            except InvalidResource as exc:
                errors += [FieldError(f"documents[{i}]" + (f".{e.path}" if e.path else ""),
                                      e.message) for e in exc.field_errors]
                if not exc.field_errors:
                    errors.append(FieldError(f"documents[{i}]", exc.detail))
        if errors:
            raise InvalidResource("invalid batch", errors)
        if dry_run:
            return [Applied(r, Action.VALID) for r, _ in parsed]
        return await self._write_batch(parsed)

    async def _write_batch(self, parsed: Sequence[tuple[Resource, int | None]]
                           ) -> builtins.list[Applied]:
        """Write the changed documents in one transaction: all of them or, when one is
        refused (a stale version, a concurrent writer), none. Meshes go first, so a
        watcher never sees a resource before its Mesh, whatever the documents' order."""
        plans = [await self._plan(r, v) for r, v in parsed]
        order = sorted((i for i, (op, _) in enumerate(plans) if op is not None),
                       key=lambda i: parsed[i][0].type != "Mesh")
        ops = [op for i in order if (op := plans[i][0]) is not None]
        written = await self._store_write(ops)
        results = [applied for _, applied in plans]
        for i, stored in zip(order, written, strict=True):
            if stored is not None:
                results[i] = Applied(stored, results[i].action)
        return results

    async def apply(self, res: Resource, expected_version: int | None = None) -> Applied:
        """Create or update; with ``expected_version`` only if it is still current."""
        self._guard(self.registry.get(res.type), res)
        if res.mesh:
            await self._require_mesh(res.mesh)
        await self._check(res, {})
        return await self._write(res, expected_version)

    async def _check(self, res: Resource, batch: Batch) -> None:
        """Run the checks, unless ``res`` would leave the stored document unchanged."""
        if not self._checks:
            return
        try:
            current = await self.store.get(res.type, res.name, res.mesh)
        except NotFound:
            current = None
        if current is not None and same_content(current, res):
            return
        for check in self._checks:
            await check(self, res, batch)

    async def _write(self, res: Resource, expected_version: int | None) -> Applied:
        op, applied = await self._plan(res, expected_version)
        if op is None:
            return applied
        (stored,) = await self._store_write([op])
        return Applied(stored or applied.resource, applied.action)

    async def _plan(self, res: Resource, expected_version: int | None
                    ) -> tuple[WriteOp | None, Applied]:
        """The store write ``res`` needs (None: it is stored already) and its outcome."""
        try:
            current = await self.store.get(res.type, res.name, res.mesh)
        except NotFound:
            if expected_version:
                raise NotFound(f"{res.type} {res.name!r} does not exist, so version "
                               f"{expected_version} cannot be updated") from None
            return Create(res), Applied(res, Action.CREATED)
        version = expected_version or current.meta.version
        if same_content(current, res):
            if version != current.meta.version:
                raise Conflict(f"{res.type} {res.name!r} is at version "
                               f"{current.meta.version}, not {version}")
            return None, Applied(current, Action.UNCHANGED)
        return Update(res, version), Applied(res, Action.UPDATED)

    async def delete(self, kind: str, name: str, mesh: str = "",
                     expected_version: int | None = None) -> None:
        """Delete one resource; a Mesh with its policies and secrets, in one transaction.

        Every refusal (a stale version, a guard, a Mesh that still has Dataplanes) comes
        before anything is written, so a refused delete leaves everything as it was."""
        desc = self.registry.get(kind)
        current = await self.store.get(desc.name, name, mesh)
        self._guard(desc, current)
        if expected_version is not None and current.meta.version != expected_version:
            raise codec.stale(desc.name, name, mesh, expected_version, current.meta.version)
        contents = await self._mesh_contents(name) if desc.name == "Mesh" else []
        await self._store_write([*contents, Delete(desc.name, name, mesh, expected_version)])

    async def _store_write(self, ops: Sequence[WriteOp]) -> builtins.list[Resource | None]:
        """``store.write``, then the view told which resources its readers must see."""
        written = await self.store.write(ops)
        if self.view is not None:
            await self.view.wrote([op_key(op) for op in ops])
        return written

    async def _require_mesh(self, mesh: str) -> None:
        try:
            await self.store.get("Mesh", mesh)
        except NotFound:
            raise InvalidResource(f"mesh {mesh!r} does not exist",
                                  [FieldError("mesh", f"mesh {mesh!r} does not exist; "
                                                      "create the Mesh first")]) from None

    async def _mesh_contents(self, mesh: str) -> builtins.list[WriteOp]:
        """The deletes of a mesh's resources, or Conflict while it has Dataplanes."""
        dataplanes = await self.store.list(ListQuery("Dataplane", mesh, limit=1))
        if dataplanes.total:
            raise Conflict(f"mesh {mesh!r} still has {dataplanes.total} dataplane(s); "
                           "stop their proxies before deleting the mesh")
        ops: builtins.list[WriteOp] = []
        for desc in self.registry:
            if desc.mesh_scoped:
                page = await self.store.list(ListQuery(desc.name, mesh))
                ops += [Delete(r.type, r.name, r.mesh, missing_ok=True) for r in page.items]
        return ops


class _BatchParse:
    """A batch validated one document at a time: the resources, and every problem in the
    order ``parse_batch`` reports them (each document's own errors in document order,
    then each repeated key at its later occurrences). Keys are found repeated through a
    set, so a batch of 10,000 costs 10,000 lookups rather than 50 million comparisons."""

    def __init__(self, manager: ResourceManager) -> None:
        self._manager = manager
        self._parsed: builtins.list[tuple[Resource, int | None]] = []
        self._errors: builtins.list[FieldError] = []
        self._repeated: builtins.list[FieldError] = []
        self._keys: set[tuple[str, str, str]] = set()

    def feed(self, i: int, doc: Any) -> None:
        if i >= MAX_BATCH:
            raise InvalidResource(f"a batch holds at most {MAX_BATCH} documents")
        try:
            res, version = self._manager.parse_one(doc)
        except InvalidResource as exc:
            self._errors += [FieldError(f"documents[{i}]" + (f".{e.path}" if e.path else ""),
                                        e.message) for e in exc.field_errors]
            if not exc.field_errors:
                self._errors.append(FieldError(f"documents[{i}]", exc.detail))
            return
        if res.key in self._keys:
            self._repeated.append(FieldError(f"documents[{i}]",
                                             f"{res.key[0]} {res.key[2]!r} appears twice"))
        self._keys.add(res.key)
        self._parsed.append((res, version))

    def result(self) -> builtins.list[tuple[Resource, int | None]]:
        errors = self._errors + self._repeated
        if errors:
            raise InvalidResource("invalid batch", errors)
        return self._parsed


def _version_of(doc: Any) -> int | None:
    version = doc.get("version") if isinstance(doc, Mapping) else None
    if version is None:
        return None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidResource("invalid version", [FieldError("version",
                                                             "expected a positive integer")])
    return version
