"""Obtaining and renewing the workload certificate: the loop around ``identity``.

``Rotator.issue`` has a new key and CSR made (``keys``: by default in a child process,
``proxy.agent.keys.child_request``), has the zone CP sign it, checks the answer and
hands the new ``Identity`` (and the trust bundle that came with it) to ``publish`` — the
SDS server, which pushes it to Envoy at once. ``run`` sleeps until the current
certificate's renewal time (two thirds of its lifetime), renews, and starts over; a failed
renewal is retried with backoff (``identity.retry_delay``) while Envoy keeps the old
certificate. Every renewal makes a new key.

``request_renewal`` (the control plane's ``Renew``, sent when the mesh's CA changes) makes
``run`` renew now instead of at the scheduled time, after a random delay of up to
``spread`` seconds: the CP asks every sidecar of a mesh at once, and the delay keeps them
from reaching the CA in the same instant. Requests coalesce: any number of them before a
signing request goes out are answered by that one. A request that arrives while a
signing request is in flight is answered by one more renewal after it, since the CA may
have changed after that request was signed.

The clock and the sleep are injected, so tests drive hours of rotations in no time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable

from proxy.agent.errors import AgentError
from proxy.agent.identity import MIN_RENEW_DELAY, Identity, SignedCertificate, retry_delay
from proxy.agent.keys import KeySource, child_request

log = logging.getLogger(__name__)

Sign = Callable[[bytes], Awaitable[SignedCertificate]]
Publish = Callable[[Identity, bytes], None]
Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], Awaitable[None]]


RENEW_SPREAD = 2.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Rotator:
    def __init__(self, common_name: str, sign: Sign, publish: Publish, *,
                 clock: Clock = utc_now, sleep: Sleep = asyncio.sleep,
                 spread: float = RENEW_SPREAD, rng: random.Random | None = None,
                 keys: KeySource = child_request) -> None:
        self._common_name = common_name
        self._keys = keys
        self._sign = sign
        self._publish = publish
        self._clock = clock
        self._sleep = sleep
        self._spread = spread
        self._rng = rng or random.Random()
        self._requested = asyncio.Event()
        self.current: Identity | None = None
        self.renewals = 0
        self.failures = 0
        self.requests = 0

    def request_renewal(self) -> None:
        """Renew as soon as ``run`` can (see the module's notes on coalescing)."""
        self.requests += 1
        self._requested.set()

    async def issue(self) -> Identity:
        """One signing round trip; raises the CP's error as an ``AgentError``."""
        request = await self._keys(self._common_name)
        try:
            self._requested.clear()  # requests made until now are answered by this CSR
            signed = await self._sign(request.csr_pem)
            identity = await request.accept(signed, self._clock())
        finally:
            await request.close()
        self.current = identity
        self._publish(identity, signed.trust_bundle_pem)
        return identity

    async def run(self) -> None:
        """Renew ``current`` forever (call ``issue`` first)."""
        assert self.current is not None, "issue() the first certificate before run()"
        while True:
            current = self.current
            wait = (current.renew_at() - self._clock()).total_seconds()
            if await self._until_due(max(wait, MIN_RENEW_DELAY)):
                log.info("the control plane asked for a new certificate")
                await self._sleep(self._rng.uniform(0, self._spread))
            await self._renew(current)

    async def _until_due(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until a renewal is requested; whether one was."""
        if self._requested.is_set():
            return True
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        requested = asyncio.ensure_future(self._requested.wait())
        try:
            await asyncio.wait({sleeping, requested}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            requested.cancel()
        if sleeping.done() and not sleeping.cancelled():
            sleeping.result()  # the sleep's own failure, if any
        return self._requested.is_set()

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
