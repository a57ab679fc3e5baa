"""One proxy's own part from another's: a template per class, patched by address.

The own part (``proxy.envoy.generate_own``: inbound listeners with their route and local
cluster, the inbound capture listener, the Prometheus listener) is what a mesh-wide
change costs per proxy once shapes are shared. Proxies of one class differ in it only by
their address, which appears in names (``inbound:<address>:<port>``), stat prefixes
(``inbound_<address with _>_<port>``) and bound socket addresses. So the first proxy's
own part, serialized, is the class's template, and another proxy's own part is the
template with the first address's text (as is, and as a stat prefix spells it) replaced
by its own, in names and bytes.

Theory of operation. A replacement in protobuf bytes keeps every length prefix valid
only if the text keeps its length, so a class is also split by the address's length and
kind (``own_key``: everything the own part reads but the address — what it reads of the
matching result (``policies_key``: proxy-wide and inbound confs, as values, so a template
outlives a state generation that changed only outbound confs), the inbounds, the
transparent proxy, mesh-wide settings, the name where spans are reported under it — plus
the length, whether it is an IP literal and its family). Whether the own part depends
on the address only through its text, and whether the first address's text occurs in
nothing else (an inbound's own address, a part of a longer one), is checked, not
assumed: the class's first two proxies with different addresses are generated whole,
and the template is kept only if patching the first into the second gives exactly the
second's names and bytes; otherwise the class is generated whole from then on.
``tests/unit/test_own_template.py`` and ``tests/unit/test_fleet_dependencies.py`` check
patched parts against full generation.

Cost per proxy: a key, then a ``bytes.replace`` and a digest per resource that names the
address, and parsing the patched bytes back into messages (for ``inspect``); a resource
that does not name the address (the local application cluster) is shared as is. Each
class pays two whole generations, a lone proxy one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from types import MappingProxyType
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message
from pydantic import BaseModel

from gossamer.model.dataplane import DataplaneSpec
from gossamer.policy import ProxyPolicies
from proxy.context import ProxyContext
from proxy.envoy import generate_own
from proxy.envoy.protos import is_ip, stat_prefix
from proxy.envoy.resources import ProxyResources
from sync.messages import Entry, Payload
from zone_cp.xds_resources import TYPE_URLS, desired_entries, digest

_CLASSES: dict[str, type[Message]] = {
    TYPE_URLS["listeners"]: listener_pb2.Listener,
    TYPE_URLS["clusters"]: cluster_pb2.Cluster,
    TYPE_URLS["endpoints"]: endpoint_pb2.ClusterLoadAssignment,
    TYPE_URLS["routes"]: route_pb2.RouteConfiguration,
}
_ATTRS = {type_url: attr for attr, type_url in TYPE_URLS.items()}

Encoder = Callable[[Message, str], Entry]


@dataclass(frozen=True)
class _Item:
    """One resource of a template: its bytes, and the message and entry every proxy
    shares when the address does not occur in it (None: patched per proxy)."""

    name: str
    value: bytes
    shared: tuple[Message, Entry] | None


@dataclass(frozen=True)
class OwnTemplate:
    """A class's own part as built for the proxy at ``address``, by type URL."""

    address: str
    items: Mapping[str, tuple[_Item, ...]]

    def instantiate(self, address: str) -> tuple[ProxyResources, dict[str, dict[str, Entry]]]:
        """The own part of the class's proxy at ``address`` (of the template's
        address's length) and its engine entries."""
        pairs = _pairs(self.address, address)
        found: dict[str, dict[str, Message]] = {}
        entries: dict[str, dict[str, Entry]] = {}
        for type_url, items in self.items.items():
            messages: dict[str, Message] = {}
            encoded: dict[str, Entry] = {}
            for item in items:
                if item.shared is not None:
                    messages[item.name], encoded[item.name] = item.shared
                    continue
                name, value = _patch(item.name, pairs), _patch(item.value, pairs)
                messages[name] = _CLASSES[type_url].FromString(value)
                encoded[name] = Entry(version=digest(value), payload=Payload(type_url, value))
            found[type_url] = messages
            entries[type_url] = encoded
        resources: dict[str, Any] = {
            _ATTRS[t]: MappingProxyType(dict(sorted(m.items()))) for t, m in found.items()
        }
        return ProxyResources(**resources), entries


def own_key(ctx: ProxyContext, policies: Hashable, inbounds: Hashable | None = None) -> Hashable:
    """Everything ``generate_own`` reads of ``ctx`` but the proxy's address:
    ``policies`` stands for ``ctx.policies`` (``policies_key``, or within one state
    generation the identity of a matching result the class shares), then the inbounds
    and the transparent proxy (``inbounds_key``, given when the caller keeps it per
    Dataplane), the mesh-wide settings and the address's length, kind and family; the
    name only where spans are reported under it (no inbounds)."""
    net = ctx.dataplane.networking
    return (
        policies,
        ctx.mesh,
        ctx.zone,
        ctx.mtls_mode,
        ctx.passthrough,
        len(net.address),
        is_ip(net.address),
        ":" in net.address,
        inbounds_key(ctx.dataplane) if inbounds is None else inbounds,
        None if net.inbound else ctx.name,
    )


def inbounds_key(spec: DataplaneSpec) -> Hashable:
    """A Dataplane's inbounds and transparent proxy as a hashable value."""
    net = spec.networking
    return (_frozen(net.inbound), _frozen(net.transparent_proxying))


@dataclass(frozen=True)
class Pending:
    """The first proxy of a class: its address and own part, until a second proxy with
    another address can check them as a template."""

    address: str
    own: ProxyResources
    entries: dict[str, dict[str, Entry]]


def first(ctx: ProxyContext, encoder: Encoder) -> tuple[ProxyResources, Pending]:
    """The own part of a class's first proxy, generated, and what the second checks
    (and what this proxy gets again while it is alone: same key, same address, same
    part)."""
    own = generate_own(ctx)
    return own, Pending(ctx.dataplane.networking.address, own, desired_entries(own, encoder))


def second(
    ctx: ProxyContext, pending: Pending, encoder: Encoder
) -> tuple[ProxyResources, OwnTemplate | Pending | None]:
    """The own part of a class's next proxy, generated, and what the class now uses: a
    template if patching the first proxy's part gives exactly this one's, the same
    ``pending`` when the addresses are equal (nothing to check), else None (generate
    whole)."""
    own = generate_own(ctx)
    address = ctx.dataplane.networking.address
    if address == pending.address:
        return own, pending
    if own.endpoints or pending.own.endpoints:
        return own, None  # a load assignment's version also covers its cluster's
    pairs = _pairs(pending.address, address)
    items: dict[str, tuple[_Item, ...]] = {}
    mine = own.by_type()
    for type_url, messages in pending.own.by_type().items():
        real = mine[type_url]
        if len(real) != len(messages):
            return own, None
        built = []
        for name, message in messages.items():
            value = message.SerializeToString(deterministic=True)
            patched = real.get(_patch(name, pairs))
            if patched is None or patched.SerializeToString(deterministic=True) != _patch(
                value, pairs
            ):
                return own, None
            shared = None
            if patched is message or (
                _patch(name, pairs) == name and _patch(value, pairs) == value
            ):
                shared = (message, encoder(message, type_url))
            built.append(_Item(name, value, shared))
        items[type_url] = tuple(built)
    return own, OwnTemplate(pending.address, items)


def _pairs(old: str, new: str) -> tuple[tuple[str, str], ...]:
    """The spellings of address ``old`` to replace with ``new``'s: as is, and as a stat
    prefix writes it."""
    return ((old, new), (stat_prefix(old), stat_prefix(new)))


def _patch(value: Any, pairs: tuple[tuple[str, str], ...]) -> Any:
    """``value`` (text or bytes) with every spelling in ``pairs`` replaced."""
    for old, new in pairs:
        if isinstance(value, bytes):
            value = value.replace(old.encode(), new.encode())
        else:
            value = value.replace(old, new)
    return value


def policies_key(policies: ProxyPolicies) -> Hashable:
    """What the own part can read of ``policies``, as a value: per kind, the proxy-wide
    conf and the inbound confs (never the outbound ones: ``own_policies`` drops them,
    and ``tests/unit/test_own_template.py`` checks the own part is the same without
    them). Equal keys in two state generations mean an equal own part, so a class's
    template outlives a change that only touches outbound confs."""
    return (
        policies.mesh,
        policies.scope,
        tuple(
            (name, _frozen(kind.proxy), _frozen(kind.inbounds))
            for name, kind in sorted(policies.kinds.items())
        ),
    )


def own_policies(policies: ProxyPolicies) -> ProxyPolicies:
    """``policies`` as ``policies_key`` sees them: without any outbound conf."""
    return replace(
        policies,
        kinds=MappingProxyType(
            {
                name: replace(kind, outbounds=MappingProxyType({}), outbound_default=None)
                for name, kind in policies.kinds.items()
            }
        ),
    )


def _frozen(value: Any) -> Hashable:
    """A hashable stand-in for a spec or conf value (models, dataclasses, lists and
    mappings, nested), equal exactly when the values are."""
    if isinstance(value, BaseModel):
        return (type(value), tuple((k, _frozen(v)) for k, v in value.__dict__.items()))
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value), tuple(_frozen(getattr(value, f.name)) for f in fields(value)))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return (Mapping, _ordered([(_frozen(k), _frozen(v)) for k, v in value.items()]))
    if isinstance(value, set | frozenset):
        return (frozenset, _ordered([_frozen(v) for v in value]))
    return value


def _ordered(items: list[Any]) -> tuple[Any, ...]:
    """``items`` sorted where they compare (else as they came: two equal mappings built
    in different orders then get different keys, which costs sharing, never
    correctness)."""
    with contextlib.suppress(TypeError):
        items.sort()
    return tuple(items)
