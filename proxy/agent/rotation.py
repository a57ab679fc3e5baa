"""Obtaining and renewing the workload certificate: the loop around ``identity``.

``Rotator.issue`` makes a new key and CSR, has the zone CP sign it, checks the answer and
hands the new ``Identity`` (and the trust bundle that came with it) to ``publish`` — the
SDS server, which pushes it to Envoy at once. ``run`` sleeps until the current
certificate's renewal time (two thirds of its lifetime), renews, and starts over; a failed
renewal is retried with backoff (``identity.retry_delay``) while Envoy keeps the old
certificate. Every renewal makes a new key.

The clock and the sleep are injected, so tests drive hours of rotations in no time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from proxy.agent.errors import AgentError
from proxy.agent.identity import (
    MIN_RENEW_DELAY,
    Identity,
    SignedCertificate,
    accept,
    new_request,
    retry_delay,
)

log = logging.getLogger(__name__)

Sign = Callable[[bytes], Awaitable[SignedCertificate]]
Publish = Callable[[Identity, bytes], None]
Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], Awaitable[None]]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Rotator:
    def __init__(self, common_name: str, sign: Sign, publish: Publish, *,
                 clock: Clock = utc_now, sleep: Sleep = asyncio.sleep) -> None:
        self._common_name = common_name
        self._sign = sign
        self._publish = publish
        self._clock = clock
        self._sleep = sleep
        self.current: Identity | None = None
        self.renewals = 0
        self.failures = 0

    async def issue(self) -> Identity:
        """One signing round trip; raises the CP's error as an ``AgentError``."""
        key, csr = new_request(self._common_name)
        signed = await self._sign(csr)
        identity = accept(key, signed, self._clock())
        self.current = identity
        self._publish(identity, signed.trust_bundle_pem)
        return identity

    async def run(self) -> None:
        """Renew ``current`` forever (call ``issue`` first)."""
        assert self.current is not None, "issue() the first certificate before run()"
        while True:
            current = self.current
            wait = (current.renew_at() - self._clock()).total_seconds()
            await self._sleep(max(wait, MIN_RENEW_DELAY))
            await self._renew(current)

    async def _renew(self, current: Identity) -> None:
        attempt = 0
        while True:
            try:
                renewed = await self.issue()
            except AgentError as exc:
                attempt += 1
                self.failures += 1
                now = self._clock()
                delay = retry_delay(attempt, now, current.not_after)
                left = (current.not_after - now).total_seconds()
                state = (f"the certificate expires in {left:.0f}s" if left > 0
                         else "the certificate HAS EXPIRED")
                log.warning("certificate renewal failed (%s); %s, retrying in %.1fs",
                            exc.detail, state, delay)
                await self._sleep(delay)
                continue
            self.renewals += 1
            log.info("certificate renewed: valid until %s, next renewal at %s",
                     renewed.not_after.isoformat(), renewed.renew_at().isoformat())
            return
