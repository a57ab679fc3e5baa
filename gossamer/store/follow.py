"""Following a store: a full listing, then every change, relisting if the watch falls behind.

``follow`` calls ``reset`` with every current resource of the kinds (at start and after a
``RevisionCompacted``), then ``changed`` for each later write (``deleted`` true for a
removal). Consumers keep their own tables; this is the one loop that talks to the
watch. A batch of thousands of writes is handed over in slices of about ``SLICE``
seconds with a turn of the event loop between them, so a consumer's work on a big batch
(``MeshState`` updating its policy index) does not keep the loop from answering.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from gossamer.errors import RevisionCompacted
from gossamer.model.base import Resource
from gossamer.store.base import EventType, ListQuery, Store
from gossamer.store.turns import SLICE as TURN_SLICE
from gossamer.store.turns import Turns

log = logging.getLogger(__name__)

# Longest run of ``changed`` calls between two turns of the event loop, in seconds.
SLICE = TURN_SLICE


async def follow(store: Store, kinds: Iterable[str],
                 reset: Callable[[list[Resource]], None],
                 changed: Callable[[Resource, bool], None]) -> None:
    wanted = list(kinds)
    while True:
        revision = await store.revision()
        current: list[Resource] = []
        for kind in wanted:
            current += (await store.list(ListQuery(kind))).items
        reset(current)
        try:
            turns = Turns(SLICE)  # a long batch: let the loop answer meanwhile
            async for event in store.watch(revision):
                if event.resource.type in wanted:
                    changed(event.resource, event.type is EventType.DELETED)
                await turns.tick()
        except RevisionCompacted:
            log.warning("store watch fell behind its retention; relisting")
