"""The subscriber side of delta xDS: a local mirror of what a publisher sends.

Theory of operation
-------------------

A ``Mirror`` holds, per type URL it subscribes to, name → ``Entry`` as last accepted.
It outlives streams: on every (re)connect the shell sends ``initial_requests()``, which
report the versions the mirror holds, so the publisher sends only the difference. A
process that keeps its mirror in a store rebuilds it with ``load`` at start.

For each response, ``on_response`` checks every updated resource with the caller's
``validate`` function (which raises a ``GossamerError``, e.g. ``InvalidResource``, to
refuse one), applies the response and returns an ``Applied``: what changed, what was
refused, and the ACK or NACK to send back (always exactly one, carrying the response's
nonce).

What a NACK refuses is a choice, made per mirror:

* per resource (the default, Gossamer's subscribers): good resources and all removals are
  applied; the refused resources keep their previous version (or stay absent) and are named
  in the NACK's ``RejectedResources`` detail, so the publisher holds back only those. A
  zone keeps receiving every policy except the broken one.
* per response (``whole_response=True``, Envoy's behaviour): if anything is refused,
  nothing in the response is applied and the NACK names nothing. This exists so tests can
  drive the engine exactly as Envoy does.

Either way the mirror only ever holds versions the publisher sent, and a refused resource
never replaces a good one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gossamer.errors import GossamerError
from sync.errors import RemoteProtocolError
from sync.messages import Entry, Nack, Request, Response

Validate = Callable[[str, str, Entry], None]
"""``validate(type_url, name, entry)``: return to accept, raise a ``GossamerError`` to refuse."""


def accept_all(type_url: str, name: str, entry: Entry) -> None:
    """The default ``Validate``: every resource is acceptable."""


@dataclass(frozen=True)
class Applied:
    """The outcome of one response: the changes made and the answer to send."""

    type_url: str
    reply: Request
    updated: Mapping[str, Entry] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()
    rejected: Mapping[str, str] = field(default_factory=dict)


class Mirror:
    """A subscriber's copy of the resources of some types, fed by delta responses."""

    def __init__(self, type_urls: Iterable[str], validate: Validate = accept_all, *,
                 whole_response: bool = False, node_id: str = "") -> None:
        self._resources: dict[str, dict[str, Entry]] = {t: {} for t in type_urls}
        self._validate = validate
        self._whole_response = whole_response
        self._node_id = node_id

    @property
    def type_urls(self) -> list[str]:
        return list(self._resources)

    def resources(self, type_url: str) -> Mapping[str, Entry]:
        return MappingProxyType(self._resources[type_url])

    def versions(self, type_url: str) -> dict[str, str]:
        return {name: entry.version for name, entry in self._resources[type_url].items()}

    def load(self, type_url: str, resources: Mapping[str, Entry]) -> None:
        """Restore a type's state (from a local store at start), replacing what is held."""
        self._table(type_url).clear()
        self._table(type_url).update(resources)

    def initial_requests(self) -> list[Request]:
        """One wildcard request per type, reporting the versions held, for a new stream."""
        return [Request(type_url=t, initial_versions=self.versions(t), node_id=self._node_id)
                for t in self._resources]

    def on_response(self, response: Response) -> Applied:
        """Apply one response and produce its ACK or NACK."""
        table = self._table(response.type_url)
        rejected = self._check(response)
        if rejected and self._whole_response:
            return Applied(response.type_url, self._nack(response, rejected, name_them=False),
                           rejected=rejected)
        updated = {n: e for n, e in response.resources.items()
                   if n not in rejected and table.get(n) != e}
        removed = frozenset(n for n in response.removed if n in table)
        table.update(updated)
        for name in removed:
            del table[name]
        reply = (self._nack(response, rejected, name_them=True) if rejected
                 else Request(type_url=response.type_url, response_nonce=response.nonce))
        return Applied(response.type_url, reply, updated, removed, rejected)

    def _check(self, response: Response) -> dict[str, str]:
        rejected = {}
        for name, entry in response.resources.items():
            try:
                self._validate(response.type_url, name, entry)
            except GossamerError as exc:
                rejected[name] = exc.detail
        return rejected

    @staticmethod
    def _nack(response: Response, rejected: Mapping[str, str], *, name_them: bool) -> Request:
        summary = "; ".join(f"{n}: {why}" for n, why in sorted(rejected.items()))
        nack = Nack(message=f"rejected {len(rejected)} resource(s): {summary}",
                    rejected=dict(rejected) if name_them else None)
        return Request(type_url=response.type_url, response_nonce=response.nonce, error=nack)

    def _table(self, type_url: str) -> dict[str, Entry]:
        table = self._resources.get(type_url)
        if table is None:
            raise RemoteProtocolError(f"response for {type_url!r}, which was not subscribed")
        return table
