"""A policy index: the policies that can select a proxy, looked up rather than scanned.

``match_policies`` reads every policy it is given, so handing it all the policies of a
mesh costs every proxy O(policies of the mesh). A ``PolicyIndex`` holds a mesh's policies
and answers, per proxy, only the policies whose top-level ``targetRef`` selects it:

    index = PolicyIndex(state.policies(mesh), zone=state.zone)
    found = index.select(ProxyView.of(dataplane, state.zone))
    match_policies(dataplane, found.policies, ..., zone=state.zone, presorted=True)

equals ``match_policies(dataplane, state.policies(mesh), ..., presorted=True)``.

Order. Each entry carries an ``order``, a sort key, and a lookup returns its policies in
ascending order. ``PolicyIndex(policies)`` uses each policy's position in the input, so
the result keeps the input order; ``PolicyIndex.ordered(pairs)`` takes the keys from the
caller (``MeshState`` passes ``(policy_order(p), p.key)``, which ``OrderedPolicies``
computes once per stored policy), and then ``add`` and ``discard`` change one policy in
place: a policy change at 20,000 policies costs a binary search in the policy's own bucket,
not a rebuild (113 ms). Orders must be unique and comparable with each other; the index
holds one policy per store key (type, mesh, name), as a store does.

How it works. At build, each policy that can apply at all (a policy of some mesh, a
top-level targetRef not naming another mesh, not a zone-origin policy of another zone) goes
into exactly one bucket, keyed by its mesh and what its targetRef names:

- ``Mesh``, and a ``MeshSubset`` with no tags: the mesh's bucket (every proxy);
- ``MeshService``/``MeshServiceSubset``: the service's bucket;
- ``MeshSubset``: the bucket of one of its tag pairs, the likeliest to be rare among
  proxies (the service tag, then any user tag, then protocol, then zone);
- ``Dataplane`` (with or without tags): the bucket of its ``name``.

A lookup reads the buckets of the proxy's mesh, name, inbound services and every tag
pair its inbounds carry (with the zone tag ``ProxyView`` adds, and the zone tag alone for
a proxy with no inbounds, as ``selectors.selects_proxy`` matches it). Any policy that
selects the proxy is in one of them, since a selected subset's tags, the indexed pair
included, all sit on one inbound or in the proxy's zone tags. Every found policy but a
mesh-wide one is re-checked with ``selects_proxy``, so the result is exact: the policies
that select the proxy, by order. Each bucket is a list sorted by order, and a lookup
merges the ones it reads. Build is linear in the policies; a lookup costs the buckets it
reads, i.e. the candidates plus the few subsets sharing one tag pair; ``add`` and
``discard`` cost a binary search and a list insert or delete in one bucket.

Leaving out the policies that do not select a proxy changes nothing in ``match_policies``:
such a policy contributes no conf (``selects_inbound`` implies ``selects_proxy``), and
matching uses a policy's place in the list only to sort, which the kept ones keep.
"""

from __future__ import annotations

import bisect
import heapq
import json
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

from gossamer.model.base import Resource
from gossamer.model.labels import PROTOCOL_TAG, SERVICE_TAG, ZONE_TAG
from gossamer.model.policy import TargetKind, TargetRef
from gossamer.policy.selectors import ProxyView, applies_in_zone, selects_proxy, top_target_ref

# What stands for one policy in a candidate set's identity: (type, name, version,
# revision, modification time) for a stored policy, whose store bumps version and
# revision on every write (revision also tells a deleted-and-recreated policy apart);
# (type, name, "unstored", labels, canonical spec) for one never stored (revision 0).
PolicyKey = tuple[Hashable, ...]


@dataclass(frozen=True)
class Candidates:
    """The policies that select one proxy, in the index's input order, and ``identity``:
    one ``PolicyKey`` per policy, same order, a cheap hashable name for the set.

    Sharing matching between proxies. Let proxies *a* and *b* be looked up (in one index
    or in indexes of different changes) with equal ``match_key(view, found)``: the same
    ``identity``, mesh, zone, inbounds (keys, and tags with the zone tag the view adds)
    and outbound services. Then ``match_policies`` with the same ``destinations``,
    ``zone`` and ``only_destinations`` gives results equal but for
    ``ProxyPolicies.dataplane`` (the proxy's own name):
    ``replace(result_b, dataplane=a.name) == result_a``. Matching reads a proxy's name only
    through ``Dataplane`` targetRefs, and candidates are exact: a ``Dataplane``-targeted
    policy is a candidate only of the proxy it names, so an identity holding one belongs
    to that proxy alone, and any other identity makes the name irrelevant.
    """

    policies: tuple[Resource, ...]
    identity: tuple[PolicyKey, ...]

    @property
    def names_a_dataplane(self) -> bool:
        """True when a candidate targets a ``Dataplane`` by name: the set is one proxy's."""
        return any(_kind(p) is TargetKind.DATAPLANE for p in self.policies)


class _Entry(NamedTuple):
    """One indexed policy; ``order`` is its sort key, ``exact`` says its bucket alone
    proves it selects every proxy that reads the bucket. (A NamedTuple: one is made per
    policy at build, at a third of a frozen dataclass's cost.)"""

    order: Any
    policy: Resource
    ref: TargetRef
    key: PolicyKey
    exact: bool


Bucket = tuple[str, ...]  # (what, mesh, value...): see _bucket_of and PolicyIndex.select
StoreKey = tuple[str, str, str]  # Resource.key: (type, mesh, name)
_ORDER = attrgetter("order")


class PolicyIndex:
    """The policies of one or more meshes, bucketed by what their targetRef names.

    ``zone``: the zone of the proxies it answers for (zone-origin policies of other zones
    are left out); lookups must pass views of that zone. None when unknown, as
    ``match_policies(zone=None)`` matches. ``select`` returns new tuples, so a caller may
    keep a result while the index changes under ``add`` and ``discard``.
    """

    def __init__(self, policies: Iterable[Resource] = (), zone: str | None = None) -> None:
        self.zone = zone
        self._buckets: dict[Bucket, list[_Entry]] = {}
        # Every held policy by its store key: where it is, to discard it.
        self._held: dict[StoreKey, tuple[Bucket, _Entry]] = {}
        for position, policy in enumerate(policies):
            self._append(position, policy)

    @classmethod
    def ordered(cls, pairs: Iterable[tuple[Any, Resource]],
                zone: str | None = None) -> PolicyIndex:
        """An index of ``(order, policy)`` pairs (in any order), for ``add`` and
        ``discard`` to change with orders of the same kind."""
        index = cls(zone=zone)
        for order, policy in sorted(pairs, key=itemgetter(0)):
            index._append(order, policy)
        return index

    def __len__(self) -> int:
        """How many policies are indexed (the rest can select no proxy here)."""
        return len(self._held)

    def add(self, order: Any, policy: Resource) -> None:
        """Index ``policy`` under ``order``, replacing a held policy of its store key."""
        self.discard(policy.key)
        entry = self._entry(order, policy)
        if entry is not None:
            bucket = self._buckets.setdefault(entry[0], [])
            bisect.insort_right(bucket, entry[1], key=_ORDER)
            self._held[policy.key] = entry

    def discard(self, key: StoreKey) -> None:
        """Remove the policy held under store ``key`` (type, mesh, name), if any."""
        held = self._held.pop(key, None)
        if held is None:
            return
        name, entry = held
        bucket = self._buckets[name]
        at = bisect.bisect_left(bucket, entry.order, key=_ORDER)
        assert bucket[at] is entry, "orders must be unique"
        del bucket[at]
        if not bucket:
            del self._buckets[name]

    def select(self, view: ProxyView) -> Candidates:
        """The policies that select the proxy ``view`` (built with this index's zone)."""
        if view.zone != self.zone:
            raise ValueError(f"a policy index of zone {self.zone!r} cannot answer for "
                             f"proxy {view.name!r} of zone {view.zone!r}")
        found = [bucket for key in lookup_keys(view) if (bucket := self._buckets.get(key))]
        entries: Iterable[_Entry] = (found[0] if len(found) == 1 else
                                     heapq.merge(*found, key=_ORDER))
        kept = [e for e in entries if e.exact or selects_proxy(e.ref, view)]
        return Candidates(policies=tuple(e.policy for e in kept),
                          identity=tuple(e.key for e in kept))

    def bucket_of(self, policy: Resource) -> Bucket | None:
        """The bucket ``policy`` goes into, or None when it can select no proxy here: it
        can select only proxies with that bucket among their ``lookup_keys``."""
        entry = self._entry(0, policy)
        return entry[0] if entry is not None else None

    def candidates(self, view: ProxyView) -> list[Resource]:
        """``select(view).policies`` as a list, to hand to ``match_policies``."""
        return list(self.select(view).policies)

    def _append(self, order: Any, policy: Resource) -> None:
        """Index a policy whose order sorts after every held one (a build)."""
        if policy.key in self._held:
            raise ValueError(f"{policy.type} {policy.name!r} of mesh {policy.mesh!r} is "
                             f"given twice: an index holds one policy per name")
        entry = self._entry(order, policy)
        if entry is not None:
            self._buckets.setdefault(entry[0], []).append(entry[1])
            self._held[policy.key] = entry

    def _entry(self, order: Any, policy: Resource) -> tuple[Bucket, _Entry] | None:
        """The bucket and entry of ``policy``, or None when it can select no proxy here."""
        ref = top_target_ref(policy)
        if ref is None or (ref.mesh and ref.mesh != policy.mesh):
            return None  # not a policy, or a targetRef that selects nothing here
        if not applies_in_zone(policy, self.zone):
            return None
        bucket, exact = _bucket_of(policy.mesh, ref)
        return bucket, _Entry(order, policy, ref, policy_key(policy), exact)


# A proxy as matching reads it, less its name, plus its candidates: see ``Candidates``.
MatchKey = tuple[Hashable, ...]


def match_key(view: ProxyView, found: Candidates) -> MatchKey:
    """A hashable key under which proxies share one ``match_policies`` result (for the
    same ``destinations`` and ``only_destinations``, which the caller adds to it)."""
    inbounds = tuple((ib.key, tuple(sorted(ib.tags.items()))) for ib in view.inbounds)
    return (view.mesh, view.zone, inbounds, view.outbound_services, found.identity)


def policy_key(policy: Resource) -> PolicyKey:
    """What stands for ``policy`` in a ``Candidates.identity`` (see ``PolicyKey``)."""
    meta = policy.meta
    if meta.revision:
        return (policy.type, policy.name, meta.version, meta.revision, meta.modification_time)
    return (policy.type, policy.name, "unstored", tuple(sorted(policy.labels.items())),
            json.dumps(policy.spec_dict(), sort_keys=True))


def _kind(policy: Resource) -> TargetKind | None:
    ref = top_target_ref(policy)
    return None if ref is None else ref.kind


# Which tag of a MeshSubset to index it by: the one likeliest to be rare among proxies.
_TAG_RANK = {SERVICE_TAG: 0, PROTOCOL_TAG: 2, ZONE_TAG: 3}


def _subset_pair(tags: dict[str, str]) -> tuple[str, str]:
    key = min(tags, key=lambda k: (_TAG_RANK.get(k, 1), k))
    return key, tags[key]


def _bucket_of(mesh: str, ref: TargetRef) -> tuple[Bucket, bool]:
    """The one bucket a top-level targetRef goes into, and whether it is exact there."""
    if ref.kind is TargetKind.MESH or (ref.kind is TargetKind.MESH_SUBSET and not ref.tags):
        return ("mesh", mesh), True
    if ref.kind is TargetKind.MESH_SUBSET:
        assert ref.tags  # checked above
        return ("tag", mesh, *_subset_pair(ref.tags)), False
    assert ref.name  # TargetRef refuses a service or Dataplane kind without a name
    if ref.kind is TargetKind.MESH_EXTERNAL_SERVICE:  # the zone egress's, no proxy's
        return ("external", mesh, ref.name), False
    if ref.kind is TargetKind.DATAPLANE:
        return ("dataplane", mesh, ref.name), not ref.tags
    # MeshService (exact only if the ref has no tags) and MeshServiceSubset.
    return ("service", mesh, ref.name), not ref.tags


def lookup_keys(view: ProxyView) -> Sequence[Bucket]:
    """Every bucket that may hold a policy selecting ``view``, each once."""
    mesh = view.mesh
    keys: dict[Bucket, None] = {("mesh", mesh): None, ("dataplane", mesh, view.name): None}
    for key, value in view.zone_tags.items():
        keys[("tag", mesh, key, value)] = None
    for inbound in view.inbounds:
        service = inbound.tags.get(SERVICE_TAG)
        if service is not None:
            keys[("service", mesh, service)] = None
        for key, value in inbound.tags.items():
            keys[("tag", mesh, key, value)] = None
    return list(keys)
