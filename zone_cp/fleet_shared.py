"""What proxies regenerated in one state generation share, and what each one read.

``Shared.generate`` builds one proxy's Envoy resources from its ``ProxyInputs``. Within
one ``MeshState`` generation it reuses the work of proxies that came before: the
``match_policies`` result of any proxy with the same matching inputs (candidate policies,
inbound ports and tags, outbound services, reachable services; the name too when a
candidate targets a Dataplane), and the encoding of any message object another proxy
already encoded (the ``PieceCache`` hands the same cluster and load assignment to every
caller of a service). ``Reading`` is the services map as the generator sees it: it
records the names looked up, so the fleet knows which endpoint changes concern a proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping

from google.protobuf.message import Message

from gossamer.model.base import Resource
from gossamer.model.policy import TargetKind
from gossamer.policy import ProxyPolicies
from gossamer.policy.selectors import top_target_ref
from proxy.context import ProxyContext, Service
from proxy.envoy.resources import ProxyResources
from sync.messages import Entry
from zone_cp.mesh_state import MeshState, ProxyInputs
from zone_cp.xds_resources import Entries, desired_entries, encode


class Reading(Mapping[str, Service]):
    """``services``, recording every name looked up; iterating or sizing it counts as
    reading all of them (``read`` is then None)."""

    def __init__(self, services: Mapping[str, Service]) -> None:
        self.services = services
        self._read: set[str] = set()
        self._all = False

    def __getitem__(self, name: str) -> Service:
        self._read.add(name)
        return self.services[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._read.add(name)
        return name in self.services

    def __iter__(self) -> Iterator[str]:
        self._all = True
        return iter(self.services)

    def __len__(self) -> int:
        self._all = True
        return len(self.services)

    @property
    def read(self) -> frozenset[str] | None:
        return None if self._all else frozenset(self._read)


class Shared:
    def __init__(self, state: MeshState,
                 generate: Callable[[ProxyContext], ProxyResources]) -> None:
        self._state = state
        self._generate = generate
        self._generation = -1
        self._matches: dict[Hashable, ProxyPolicies] = {}
        self._encoded: dict[int, tuple[Message, Entry]] = {}
        self.match_hits = 0

    def generate(self, inputs: ProxyInputs, reading: Reading
                 ) -> tuple[ProxyResources, Entries, frozenset[str] | None]:
        """The proxy's resources, its engine entries and the services it read."""
        self._fresh()
        ctx = self._state.context(inputs, self._match(inputs), reading)
        generated = self._generate(ctx)
        return generated, desired_entries(generated, self._encode), reading.read

    def _fresh(self) -> None:
        if self._generation != self._state.generation:
            self._generation = self._state.generation
            self._matches.clear()
            self._encoded.clear()

    def _match(self, inputs: ProxyInputs) -> ProxyPolicies:
        key = match_key(inputs)
        found = self._matches.get(key)
        if found is None:
            found = self._matches[key] = self._state.match(inputs)
        else:
            self.match_hits += 1
        return found

    def _encode(self, message: Message, type_url: str) -> Entry:
        found = self._encoded.get(id(message))
        if found is not None and found[0] is message:
            return found[1]
        entry = encode(message, type_url)
        self._encoded[id(message)] = (message, entry)  # held: the id stays its own
        return entry


def match_key(inputs: ProxyInputs) -> Hashable:
    """Everything ``match_policies`` reads of a proxy in one state generation: the
    candidates (by identity: ``MeshState`` holds them for the generation), inbound keys
    and tags, outbound and reachable services, and the proxy's name only when a candidate
    targets a Dataplane (the one selector that reads it)."""
    view = inputs.view
    named = any(_targets_dataplane(c) for c in inputs.candidates)
    return (tuple(id(c) for c in inputs.candidates),
            tuple((ib.key, tuple(sorted(ib.tags.items()))) for ib in view.inbounds),
            view.outbound_services, inputs.reachable, view.name if named else None)


def _targets_dataplane(policy: Resource) -> bool:
    ref = top_target_ref(policy)
    return ref is not None and ref.kind is TargetKind.DATAPLANE
