"""What proxies regenerated in one state generation share, and what each one read.

``Shared.generate`` builds one proxy's Envoy resources from its ``ProxyInputs``. Within
one ``MeshState`` generation it reuses the work of proxies that came before:

- the ``match_policies`` result of any proxy with the same matching inputs (candidate
  policies, inbound ports and tags, outbound and reachable services: ``match_key``);
- the shape (``proxy.envoy.generate_shape``: outbounds, routes, clusters, load
  assignments) of any proxy with the same matching result and ``shape_key``, to which
  only the proxy's own part (inbounds, Prometheus listener) is added;
- the own part of any proxy with the same ``own_template.own_key`` (what the own part
  reads of the policies, the inbounds, mesh-wide settings), as a template patched with
  the proxy's address (``zone_cp.own_template``); these are kept across generations,
  since the key holds the policies' content, so a change to outbound confs alone
  patches every own part from the template of the round before;
- the encoding of any message object another proxy already encoded (shared shapes, and
  the ``PieceCache``'s clusters and load assignments).

``Reading`` is the services map as the generator sees it: it records the names looked
up, so the fleet knows which endpoint changes concern a proxy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, replace

from google.protobuf.message import Message

from gossamer.model.dataplane import DataplaneSpec
from gossamer.policy import ProxyPolicies
from gossamer.policy.index import match_key as policy_match_key
from proxy.context import ProxyContext, Service
from proxy.envoy import PieceCache, combine, generate_own, generate_shape, shape_key
from proxy.envoy.resources import ProxyResources
from sync.messages import Entry
from zone_cp import own_template
from zone_cp.mesh_state import MeshState, ProxyInputs
from zone_cp.own_template import OwnTemplate, inbounds_key, own_key, policies_key
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


@dataclass(frozen=True)
class _Shape:
    """A shape shared by a class of proxies: its resources, the services it read, and
    its engine entries (encoded once for the class)."""

    resources: ProxyResources
    read: frozenset[str] | None
    entries: Entries

    def entries_with(self, own: ProxyResources, generated: ProxyResources,
                     encoder: Callable[[Message, str], Entry], mine: Entries) -> Entries:
        """The entries of ``generated`` (this shape combined with ``own``, whose entries
        are ``mine``): the shape's as they are, the own part's added. A load assignment's
        version covers its cluster's (``desired_entries``), so where the own part holds a
        cluster or an assignment of the shape's name, everything is encoded together
        instead."""
        shape = self.resources
        if (own.clusters.keys() & shape.endpoints.keys()
                or own.endpoints.keys() & shape.clusters.keys()):
            return desired_entries(generated, encoder)
        return {t: {**self.entries[t], **mine[t]} if mine[t] else self.entries[t]
                for t in self.entries}


_NEW = object()  # a class whose own part no proxy has had yet
_MAX_KEPT = 100_000  # Dataplane specs' inbounds keys, own-part templates: dropped when full


class Shared:
    def __init__(self, state: MeshState, cache: PieceCache) -> None:
        self._state = state
        self._cache = cache
        self._generation = -1
        self._matches: dict[Hashable, ProxyPolicies] = {}
        self._shapes: dict[Hashable, _Shape] = {}
        self._encoded: dict[int, tuple[Message, Entry]] = {}
        # own-part templates by class, least recently used first; at most ``keep_owns``
        # (the fleet sets it from its size: a template a change made obsolete goes first)
        self._owns: OrderedDict[Hashable, OwnTemplate | own_template.Pending | None] = (
            OrderedDict())
        self.keep_owns = _MAX_KEPT
        self._inbounds: dict[str, tuple[DataplaneSpec, Hashable]] = {}
        self._policy_keys: dict[int, tuple[ProxyPolicies, Hashable]] = {}
        self.match_hits = 0
        self.shape_hits = 0
        self.own_hits = 0

    def generate(self, inputs: ProxyInputs, services: Mapping[str, Service]
                 ) -> tuple[ProxyResources, Entries, frozenset[str] | None]:
        """The proxy's resources, its engine entries and the names of ``services`` it
        read (None: all of them)."""
        self._fresh()
        matched = self._match(inputs)
        own = Reading(services)
        # The shared result names the proxy it was matched for: name this one (nothing
        # generated reads it, but whatever shows the context must not show another's).
        ctx = self._state.context(inputs, replace(matched, dataplane=inputs.dataplane.name),
                                  own)
        shape = self._shape(ctx, inputs, matched, services)
        mine, encoded = self._own(ctx, matched)
        generated = combine(shape.resources, mine)
        read = None if shape.read is None or own.read is None else shape.read | own.read
        return generated, shape.entries_with(mine, generated, self._encode, encoded), read

    def _own(self, ctx: ProxyContext, matched: ProxyPolicies) -> tuple[ProxyResources, Entries]:
        """The proxy's own part and its entries: patched from its class's template
        (``zone_cp.own_template``) when there is one, else generated (the first two
        proxies of a class with different addresses make and check the template)."""
        key = own_key(ctx, self._policies_key(matched), self._inbounds_key(ctx.dataplane))
        address = ctx.dataplane.networking.address
        found = self._owns.get(key, _NEW)
        if found is not _NEW:
            self._owns.move_to_end(key)
        if isinstance(found, OwnTemplate):
            self.own_hits += 1
            return found.instantiate(address)
        if isinstance(found, own_template.Pending) and found.address == address:
            self.own_hits += 1  # the class's one proxy again: its very part
            return found.own, found.entries
        if found is _NEW:
            while self._owns and len(self._owns) >= self.keep_owns:
                self._owns.popitem(last=False)
            mine, pending = own_template.first(ctx, self._encode)
            self._owns[key] = pending
            return mine, pending.entries
        if isinstance(found, own_template.Pending):
            mine, self._owns[key] = own_template.second(ctx, found, self._encode)
        else:
            mine = generate_own(ctx)
        return mine, desired_entries(mine, self._encode)

    def _shape(self, ctx: ProxyContext, inputs: ProxyInputs, matched: ProxyPolicies,
               services: Mapping[str, Service]) -> _Shape:
        """The shape of every proxy with ``ctx``'s shape key and matching result in this
        generation (``proxy.envoy.shapes``: the services and policies are held equal by
        sharing them)."""
        key = (id(matched), shape_key(ctx))
        found = self._shapes.get(key)
        if found is not None:
            self.shape_hits += 1
            return found
        reading = Reading(services)
        shape = generate_shape(self._state.context(inputs, matched, reading), self._cache)
        found = self._shapes[key] = _Shape(shape, reading.read,
                                           desired_entries(shape, self._encode))
        return found

    def _fresh(self) -> None:
        if self._generation != self._state.generation:
            self._generation = self._state.generation
            self._matches.clear()
            self._shapes.clear()
            self._encoded.clear()
            self._policy_keys.clear()

    def _policies_key(self, matched: ProxyPolicies) -> Hashable:
        """``own_template.policies_key`` of a matching result, once per result."""
        found = self._policy_keys.get(id(matched))
        if found is None or found[0] is not matched:
            found = self._policy_keys[id(matched)] = (matched, policies_key(matched))
        return found[1]

    def _inbounds_key(self, spec: DataplaneSpec) -> Hashable:
        """``own_template.inbounds_key`` of this very spec, kept across generations (a
        spec never changes; a changed Dataplane is a new one). One spec is kept per
        address, the latest asked for: keeping every spec seen would hold a connected
        sidecar's Dataplane twice (as registered, then as stored) and every departed
        one's."""
        address = spec.networking.address
        found = self._inbounds.get(address)
        if found is not None and found[0] is spec:
            return found[1]
        if found is None and len(self._inbounds) >= _MAX_KEPT:
            self._inbounds.clear()
        key = inbounds_key(spec)
        self._inbounds[address] = (spec, key)
        return key

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
    """What ``match_policies`` reads of a proxy: ``gossamer.policy.index.match_key``
    (inbounds, outbound services, candidates' identity; a Dataplane-targeted candidate
    makes the identity that proxy's alone) and the destinations matched."""
    return (policy_match_key(inputs.view, inputs.candidates), inputs.reachable)
