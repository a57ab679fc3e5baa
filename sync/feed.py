"""A store's resources of some kinds, kept as encoded entries for publishers.

``StoreFeed`` lists the kinds once, then follows the store's watch: every change is
encoded once (``prepare`` may relabel a resource or leave it out) and handed to every
listener, so ten publishing sessions cost one encoding per change, not ten. A watch that
fell behind the store's retention (``RevisionCompacted``) relists and reports the
difference. Changes flow on store events, never on a polling tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gossamer.model.base import Meta, Resource
from gossamer.store.base import Store
from gossamer.store.view import StoreView, follow
from sync.codec import encode, kind_type_url, resource_key
from sync.engine import Engine
from sync.messages import Entry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One published resource: as prepared (for filters) and as encoded (for the wire)."""

    resource: Resource
    entry: Entry


# listener(type_url, key, item or None for a removal)
Listener = Callable[[str, str, Item | None], None]
Prepare = Callable[[Resource], Resource | None]


def strip_meta(res: Resource) -> Resource:
    """The published form carries no store meta, so equal content has equal versions
    wherever it is stored: a receiver recomputes them from its own copy on resume."""
    return res.with_meta(Meta())


class StoreFeed:
    def __init__(self, store: Store | StoreView, kinds: Iterable[str],
                 prepare: Prepare = strip_meta) -> None:
        self._store = store
        self._kinds = list(kinds)
        self._prepare = prepare
        self._items: dict[str, dict[str, Item]] = {kind_type_url(k): {} for k in self._kinds}
        self._listeners: list[Listener] = []
        self.ready = asyncio.Event()

    def items(self, type_url: str) -> dict[str, Item]:
        return dict(self._items[type_url])

    @property
    def type_urls(self) -> list[str]:
        return list(self._items)

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def run(self) -> None:
        await follow(self._store, self._kinds, self._reset, self._changed)

    def _reset(self, resources: list[Resource]) -> None:
        seen: dict[str, set[str]] = {t: set() for t in self._items}
        for res in resources:
            seen[kind_type_url(res.type)].add(resource_key(res))
            self._set(res, self._prepare(res))
        for type_url, table in self._items.items():
            for key in set(table) - seen[type_url]:
                del table[key]
                self._notify(type_url, key, None)
        self.ready.set()

    def _changed(self, res: Resource, deleted: bool) -> None:
        self._set(res, None if deleted else self._prepare(res))

    def _set(self, original: Resource, prepared: Resource | None) -> None:
        type_url = kind_type_url(original.type)
        key = resource_key(original)
        table = self._items[type_url]
        if prepared is None:
            if table.pop(key, None) is not None:
                self._notify(type_url, key, None)
            return
        item = Item(prepared, encode(prepared))
        old = table.get(key)
        if old is not None and old.entry.version == item.entry.version:
            return
        table[key] = item
        self._notify(type_url, key, item)

    def _notify(self, type_url: str, key: str, item: Item | None) -> None:
        for listener in list(self._listeners):
            listener(type_url, key, item)


Visible = Callable[[str, Item], bool]


class FeedView:
    """One publishing session's view of a feed: the items it may see, kept in its engine.

    ``visible(type_url, item)`` filters per subscriber (a zone never receives its own
    ingresses); ``after_change(type_url)`` lets the owner react to a change that alters
    the filter itself (a zone disabled), typically by calling ``refill``.
    """

    def __init__(self, feed: StoreFeed, engine: Engine, visible: Visible | None = None,
                 after_change: Callable[[str], None] | None = None) -> None:
        self._feed = feed
        self._engine = engine
        self._visible = visible or (lambda type_url, item: True)
        self._after_change = after_change
        for type_url in feed.type_urls:
            self.refill(type_url)

    def refill(self, type_url: str) -> None:
        self._engine.set_desired(type_url, {
            key: item.entry for key, item in self._feed.items(type_url).items()
            if self._visible(type_url, item)})

    def follow(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Keep the engine current and call ``wake`` after each change; returns unfollow."""
        def on_change(type_url: str, key: str, item: Item | None) -> None:
            if item is not None and self._visible(type_url, item):
                self._engine.put(type_url, key, item.entry)
            else:
                self._engine.remove(type_url, key)
            if self._after_change is not None:
                self._after_change(type_url)
            wake()
        return self._feed.listen(on_change)
