"""``from[]`` items of one inbound → an ordered, first-match list of source rules.

Every source selector a ``from[]`` item can name (``Mesh``, ``MeshSubset``,
``MeshService``, ``MeshServiceSubset``) is a conjunction of tag equalities: ``Mesh`` is
the empty set, ``MeshService: x`` is ``{gossamer.io/service: x}``. A source with tags T
gets the merge of every item whose selector is a subset of T, in item order.

To hand that to consumers (RBAC, per-source timeouts) as a plain list where the first
matching rule is the answer, the rules are the closure of the item selectors under
intersection (the union of two consistent tag sets), each carrying the merge of the items
it implies. For a source T, the largest closure set inside T is the union U of all items
matching T, and its rule merges exactly those items; any other matching rule is a strict
subset of U, so it has fewer tags. Ordering the rules by tag count, most first, therefore
makes the first match the right one. The closure can in theory grow exponentially with
overlapping subsets; it is capped at ``MAX_SOURCE_RULES``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gossamer.model.labels import SERVICE_TAG
from gossamer.policy.errors import TooManySourceRules
from gossamer.policy.merge import Conf, MergedConf, PolicyRef, merge_confs
from gossamer.policy.selectors import TagSet

MAX_SOURCE_RULES = 1024


@dataclass(frozen=True)
class SourceSelector:
    """Sources carrying all of ``tags`` (sorted ``(key, value)`` pairs); empty = any."""

    tags: TagSet

    def matches(self, source_tags: Mapping[str, str]) -> bool:
        return all(source_tags.get(k) == v for k, v in self.tags)

    @property
    def service(self) -> str | None:
        """The ``gossamer.io/service`` the selector requires, if any."""
        return dict(self.tags).get(SERVICE_TAG)

    def as_dict(self) -> dict[str, str]:
        return dict(self.tags)


@dataclass(frozen=True)
class FromRule:
    """One source rule of an inbound: sources matching ``source`` get ``conf``."""

    source: SourceSelector
    conf: MergedConf


@dataclass(frozen=True)
class FromItem:
    """One matching ``from[]`` item; ``order`` sorts items least specific first."""

    tags: TagSet
    order: tuple[Any, ...]
    policy: PolicyRef
    conf: Conf


def _union(a: TagSet, b: TagSet) -> TagSet | None:
    merged = dict(a)
    for key, value in b:
        if merged.setdefault(key, value) != value:
            return None  # contradictory: no source carries both values
    return tuple(sorted(merged.items()))


def _closure(bases: set[TagSet]) -> set[TagSet]:
    # Any union of k bases is reached by adding one base at a time to a union of k-1.
    result = set(bases)
    frontier = set(bases)
    while frontier:
        new = {u for a in frontier for b in bases
               if (u := _union(a, b)) is not None and u not in result}
        result |= new
        if len(result) > MAX_SOURCE_RULES:
            raise TooManySourceRules(
                f"from[] source selectors combine into more than {MAX_SOURCE_RULES} rules")
        frontier = new
    return result


def _implies(rule: TagSet, item: TagSet) -> bool:
    have = dict(rule)
    return all(have.get(k) == v for k, v in item)


def build_from_rules(items: Iterable[FromItem]) -> tuple[FromRule, ...]:
    """First-match source rules for one inbound, most specific (most tags) first."""
    ordered = sorted(items, key=lambda it: it.order)
    if not ordered:
        return ()
    rules = []
    for tags in _closure({it.tags for it in ordered}):
        implied = [(it.policy, it.conf) for it in ordered if _implies(tags, it.tags)]
        rules.append(FromRule(SourceSelector(tags), merge_confs(implied)))
    rules.sort(key=lambda r: (-len(r.source.tags), r.source.tags))
    return tuple(rules)


def first_match(rules: Sequence[FromRule], source_tags: Mapping[str, str]) -> MergedConf | None:
    """The conf for a source with ``source_tags``, or None if no rule matches it."""
    for rule in rules:
        if rule.source.matches(source_tags):
            return rule.conf
    return None
