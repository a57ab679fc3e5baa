"""``PieceCache``: outbound clusters and load assignments shared across proxies.

``generate`` asks the cache for each service's cluster and load assignment by their
inputs (hashable: ``Destination``, ``ClusterConfs``, ``Hosts``, the zone, ``Locality``).
Proxies with the same inputs get the very same message object, and a change to one
service's endpoints makes a new key for that service alone. The ``Hosts`` of a service
object are kept too (``hosts``): every caller of a service, in every class of proxies,
would otherwise rebuild them from its endpoints to make the key. A plain bounded LRU dict: no
locks, no clock; the zone CP owns one for all its meshes (``zone_cp.parts``) and passes it
to every ``generate``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, TypeVar

from google.protobuf.message import Message

if TYPE_CHECKING:
    from gossamer.policy.selectors import TagSet
    from proxy.context import Service
    from proxy.envoy.endpoints import Hosts

T = TypeVar("T", bound=Message)
DEFAULT_SIZE = 100_000


class PieceCache:
    def __init__(self, max_size: int = DEFAULT_SIZE) -> None:
        self._items: OrderedDict[Hashable, Message] = OrderedDict()
        self._max = max_size
        self.hits = 0
        self.misses = 0
        # service name, subset -> the latest service object asked for and its hosts
        self._hosts: dict[tuple[str, TagSet], tuple[Service, Hosts]] = {}

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        made = make()
        self._items[key] = made
        if len(self._items) > self._max:
            self._items.popitem(last=False)
        return made

    def hosts(self, service: Service, subset: TagSet, make: Callable[[], Hosts]) -> Hosts:
        """The ``Hosts`` of this very ``service`` object (and ``subset``), made once. A
        zone CP hands out one ``Service`` per service and state generation; the memo
        keeps the latest object per service name and subset, so it holds no more than
        the services there are (keeping every generation's objects held each
        registration's whole services map while a fleet connected), and is dropped
        whole when it is full."""
        key = (service.name, subset)
        found = self._hosts.get(key)
        if found is not None and found[0] is service:
            return found[1]
        if len(self._hosts) >= self._max:
            self._hosts.clear()
        made = make()
        self._hosts[key] = (service, made)
        return made

    def __len__(self) -> int:
        return len(self._items)
