"""A small cache of forwarded answers: bounded, least recently used out, TTL-respecting.

Pure: the clock is a function passed in (``time.monotonic`` by default), so tests move
time by hand. An entry lives as long as the smallest TTL among its records, capped by
``max_ttl``; a negative answer (NXDOMAIN, or NOERROR with no answer) lives for the SOA
minimum of its authority section (RFC 2308) or ``negative_ttl`` when there is no SOA.
SERVFAIL and other failures are not cached: the next query asks upstream again. On a
hit, every record's TTL is lowered by the time the entry has spent in the cache, so a
client never holds a record longer than the upstream allowed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from dnslib import RR

from dns.errors import NOERROR, NXDOMAIN
from dns.message import Question, Reply

QTYPE_SOA = 6

CacheKey = tuple[str, int, int]


@dataclass(frozen=True)
class _Entry:
    reply: Reply
    stored_at: float
    expires_at: float


@dataclass(frozen=True)
class Lease:
    """One ``lookup``'s hold on an entry: ``renew`` it before reusing what it returned."""

    key: CacheKey
    entry: _Entry
    age: int


class AnswerCache:
    """Forwarded replies by (lower-case name, qtype, qclass)."""

    def __init__(
        self,
        max_entries: int = 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_ttl: int = 3600,
        negative_ttl: int = 30,
    ) -> None:
        if max_entries < 0 or max_ttl < 0 or negative_ttl < 0:
            raise ValueError("cache bounds must not be negative")
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock
        self._max_ttl = max_ttl
        self._negative_ttl = negative_ttl

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, question: Question) -> Reply | None:
        """The cached reply with TTLs aged, or None when absent or expired."""
        found = self.lookup(question)
        return None if found is None else found[0]

    def lookup(self, question: Question) -> tuple[Reply, Lease] | None:
        """As ``get``, with a ``Lease`` that ``renew`` checks before the reply is reused.

        The resolver keeps the reply packed; the lease tells it whether the entry is
        still there, and how many seconds more to lower the packed TTLs by.
        """
        key = _key(question)
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now >= entry.expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        age = int(now - entry.stored_at)
        reply = entry.reply
        aged = Reply(
            rcode=reply.rcode,
            answer=_aged(reply.answer, age),
            authority=_aged(reply.authority, age),
            additional=_aged(reply.additional, age),
            authoritative=False,
        )
        return aged, Lease(key, entry, age)

    def renew(self, lease: Lease) -> int | None:
        """The entry's age now if it is still the one ``lease`` holds; a hit if so.

        An age (whole seconds, what the TTLs are lowered by) marks the entry recently
        used, as ``get`` does; None means look it up again: the entry expired, or was
        replaced or evicted.
        """
        entry = self._entries.get(lease.key)
        if entry is not lease.entry:
            return None
        now = self._clock()
        if now >= entry.expires_at:
            return None
        self._entries.move_to_end(lease.key)
        return int(now - entry.stored_at)

    def put(self, question: Question, reply: Reply) -> None:
        """Remember ``reply`` for ``question`` if it may be cached at all."""
        ttl = self._lifetime(reply)
        if ttl <= 0 or self._max_entries == 0:
            return
        now = self._clock()
        key = _key(question)
        self._entries[key] = _Entry(reply, stored_at=now, expires_at=now + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def _lifetime(self, reply: Reply) -> int:
        if reply.rcode not in (NOERROR, NXDOMAIN):
            return 0
        if reply.rcode == NOERROR and reply.answer:
            return min(self._max_ttl, *(rr.ttl for rr in reply.answer))
        soas = [rr for rr in reply.authority if rr.rtype == QTYPE_SOA]
        if soas:
            # RFC 2308 §5: the lesser of the SOA record's TTL and its MINIMUM field.
            soa = soas[0]
            return min(self._max_ttl, soa.ttl, soa.rdata.times[-1])
        return min(self._max_ttl, self._negative_ttl)


def _key(question: Question) -> CacheKey:
    return (question.key, question.qtype, question.qclass)


def _aged(records: tuple[RR, ...], age: int) -> tuple[RR, ...]:
    if age <= 0:
        return records
    return tuple(
        RR(rr.rname, rr.rtype, rr.rclass, max(0, rr.ttl - age), rr.rdata) for rr in records
    )
