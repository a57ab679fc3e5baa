"""When a live session's token stops admitting it: the deadlines of the tokens in use.

Theory of operation. Every stream a token admitted (an agent's ``Session``, its Envoy's
ADS stream) is a *hold* on that token: a key, the token's id and its expiry. A hold ends
when its token expires (``due(now)``) or is revoked (``using(token_id)``); whoever holds
it then ends the stream with the ``Withdrawn`` reason. Holds are kept in a heap by expiry
with lazy deletion: ``remove`` forgets a key at once, its heap entry is dropped when it
reaches the top, or when stale entries outnumber live ones (the heap is rebuilt, so
agents that reconnect for years with long-lived tokens do not grow it). The clock is
passed in (``now``), so the shell decides what time it is and tests never sleep.

Pure: no asyncio, grpc or store here; ``zone_cp.token_expiry`` is the shell.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

K = TypeVar("K", bound=Hashable)

Reason = Literal["expired", "revoked"]


@dataclass(frozen=True)
class Withdrawn:
    """Why a session's token no longer admits it. ``reason`` is a stable keyword; the
    agent's fault (it must present a new token), so the wire status is UNAUTHENTICATED."""

    reason: Reason
    token_id: str

    @property
    def detail(self) -> str:
        what = "expired" if self.reason == "expired" else "was revoked"
        return (f"token {self.token_id} {what} while in use; reconnect with a new token")


@dataclass(frozen=True)
class _Hold:
    token_id: str
    expires_at: float
    seq: int


class Deadlines(Generic[K]):
    """The holds on tokens in use, by key: which are due at a time, which use a token."""

    def __init__(self) -> None:
        self._holds: dict[K, _Hold] = {}
        self._by_token: dict[str, set[K]] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._holds)

    def __contains__(self, key: object) -> bool:
        return key in self._holds

    def add(self, key: K, token_id: str, expires_at: float) -> None:
        """Hold ``token_id`` (expiring at ``expires_at``) under ``key``, replacing any
        hold ``key`` had."""
        self.remove(key)
        self._seq += 1
        self._holds[key] = _Hold(token_id, expires_at, self._seq)
        self._by_token.setdefault(token_id, set()).add(key)
        heapq.heappush(self._heap, (expires_at, self._seq, key))

    def remove(self, key: K) -> None:
        """Forget ``key`` (nothing if it holds nothing)."""
        hold = self._holds.pop(key, None)
        if hold is None:
            return
        users = self._by_token[hold.token_id]
        users.discard(key)
        if not users:
            del self._by_token[hold.token_id]
        if len(self._heap) > 2 * len(self._holds) + 64:
            self._heap = [(h.expires_at, h.seq, k) for k, h in self._holds.items()]
            heapq.heapify(self._heap)

    def _drop_stale_top(self) -> None:
        while self._heap:
            _, seq, key = self._heap[0]
            hold = self._holds.get(key)
            if hold is not None and hold.seq == seq:
                return
            heapq.heappop(self._heap)

    def next_at(self) -> float | None:
        """The earliest expiry held, or None when nothing is held."""
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[tuple[K, Withdrawn]]:
        """Remove and return the holds whose token has expired at ``now`` (a token is
        expired at its ``exp`` second, as ``gossamer.tokens.verify`` judges it)."""
        out: list[tuple[K, Withdrawn]] = []
        while (at := self.next_at()) is not None and at <= now:
            _, _, key = heapq.heappop(self._heap)
            out.append((key, Withdrawn("expired", self._holds[key].token_id)))
            self.remove(key)
        return out

    def revoked(self, token_id: str) -> list[tuple[K, Withdrawn]]:
        """Remove and return the holds on ``token_id``, which was just revoked."""
        keys = sorted(self._by_token.get(token_id, ()), key=repr)
        for key in keys:
            self.remove(key)
        return [(key, Withdrawn("revoked", token_id)) for key in keys]
