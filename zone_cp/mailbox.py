"""What the zone CP has to tell one agent next, bounded however slowly the agent reads.

A session's ``updates`` used to be an unbounded ``asyncio.Queue``: an agent that stops
reading its stream (while its TCP window and gRPC's buffers fill) would let every trust
bundle, DNS table and ``Renew`` pile up in the CP's memory. Every message the CP sends an
agent is *state*, not an event: the newest trust bundle replaces the last, the newest
DNS table too, one pending ``Renew`` asks as much as ten (the agent coalesces them
anyway), and ``Registered`` is sent directly. So the mailbox keeps at most one update
per type (``zone_cp.updates``: ``TrustBundle``, ``DnsTable``, ``Renew``, ``Heartbeat``):
a new one replaces the pending one of its type and goes to the back. Its size is bounded
by the number of types, a slow agent still converges on the newest state, and nothing
needs to end its session.

It offers the part of ``asyncio.Queue``'s interface the registry and its listeners use
(``put_nowait``, ``get``, ``get_nowait``, ``empty``, ``qsize``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from gossamer.fifo import Wakeup
from zone_cp.updates import Update


class Mailbox:
    """A FIFO of pending updates holding at most one per type."""

    __slots__ = ("_pending", "_ready")

    def __init__(self) -> None:
        self._pending: OrderedDict[type, Update] = OrderedDict()
        self._ready = Wakeup()  # one reader, the Session stream (a zone CP holds thousands)

    def put_nowait(self, item: Update) -> None:
        """Queue ``item``, replacing (and moving behind the others) a pending update of
        its type. Never blocks or raises: the mailbox cannot grow past its types."""
        kind = type(item)
        self._pending.pop(kind, None)
        self._pending[kind] = item
        self._ready.set()

    def get_nowait(self) -> Update:
        if not self._pending:
            raise asyncio.QueueEmpty
        _, item = self._pending.popitem(last=False)
        if not self._pending:
            self._ready.clear()
        return item

    async def get(self) -> Update:
        while not self._pending:
            await self._ready.wait()
        return self.get_nowait()

    def empty(self) -> bool:
        return not self._pending

    def qsize(self) -> int:
        return len(self._pending)
