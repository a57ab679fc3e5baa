"""Which of a service's replicas to dial next: the one order both dialers follow.

A zone given several ``--global`` addresses and an agent given several ``--cp``
addresses keep one ``Failover`` each. They dial ``current``; when the dial is refused or
a stream that was up breaks, ``failed()`` moves on to the next address (wrapping around)
and says whether every address has now failed in a row, which is when the caller backs
off (exponentially, as with one address); until then it only pauses briefly before the
next address, so a dead replica costs a second, not a backoff. ``succeeded()`` (a
connection that stayed up) starts a new round. With one address every failure ends a
round, which is the single-address behaviour.

Pure: no I/O, no clock; the caller owns the timing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Failover(Generic[T]):
    """The addresses in order, the current one, and the failures since the last success."""

    def __init__(self, addresses: Sequence[T]) -> None:
        if not addresses:
            raise ValueError("no address to dial")
        self.addresses = tuple(addresses)
        self._index = 0
        self._failures = 0

    @property
    def current(self) -> T:
        return self.addresses[self._index]

    def failed(self) -> bool:
        """The current address failed: move to the next. True when every address has
        failed since the last success (a whole round: back off before the next)."""
        self._index = (self._index + 1) % len(self.addresses)
        self._failures += 1
        if self._failures >= len(self.addresses):
            self._failures = 0
            return True
        return False

    def succeeded(self) -> None:
        """The current address gave a connection that lasted: a new round starts."""
        self._failures = 0
