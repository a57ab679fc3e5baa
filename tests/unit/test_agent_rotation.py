"""The agent's certificate: checks on what the CP signs, renewal at two thirds, backoff.

The clock and the sleep are fakes, so days of rotations run in milliseconds."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable

import pytest
from cryptography import x509

from gossamer.pki.certs import KeyPair, new_root_ca, sign_leaf
from proxy.agent import identity, keygen
from proxy.agent.errors import ControlPlaneProtocolError, ControlPlaneUnavailable
from proxy.agent.identity import Identity, SignedCertificate
from proxy.agent.keys import in_process_request
from proxy.agent.rotation import Rotator

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self, stop_after: int) -> None:
        self.now = T0
        self.sleeps: list[float] = []
        self._stop_after = stop_after

    def clock(self) -> dt.datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) > self._stop_after:
            raise _Done
        self.now += dt.timedelta(seconds=seconds)
        await asyncio.sleep(0)


class _Done(Exception):
    pass


class FakeCa:
    """Signs CSRs like the zone CP, failing the next ``fail`` requests."""

    def __init__(self, time: FakeTime, lifetime: dt.timedelta = DAY) -> None:
        self.ca = new_root_ca("test", T0 - DAY, 365 * DAY)
        self.time = time
        self.lifetime = lifetime
        self.fail = 0
        self.signed = 0

    async def sign(self, csr_pem: bytes) -> SignedCertificate:
        if self.fail:
            self.fail -= 1
            raise ControlPlaneUnavailable("the control plane is down")
        self.signed += 1
        csr = x509.load_pem_x509_csr(csr_pem)
        cert = sign_leaf(self.ca, csr, self.time.now, self.lifetime,
                         uris=["spiffe://default/backend"])
        return SignedCertificate(KeyPair(cert, self.ca.key).cert_pem(), self.ca.cert_pem(),
                                 cert.not_valid_after_utc)


def rotator(time: FakeTime, ca: FakeCa) -> tuple[Rotator, list[Identity]]:
    published: list[Identity] = []
    rot = Rotator("backend-1", ca.sign, lambda ident, _trust: published.append(ident),
                  clock=time.clock, sleep=time.sleep, keys=in_process_request)
    return rot, published


async def test_renews_at_two_thirds_with_a_new_key_each_time() -> None:
    time = FakeTime(stop_after=3)
    ca = FakeCa(time)
    rot, published = rotator(time, ca)
    first = await rot.issue()
    assert first.uris == ("spiffe://default/backend",)
    with pytest.raises(_Done):
        await rot.run()
    assert time.sleeps[:3] == [pytest.approx(16 * 3600)] * 3
    assert len(published) == 4  # the first certificate and three renewals
    keys = {p.key_pem() for p in published}
    assert len(keys) == 4
    assert rot.renewals == 3


async def test_a_failed_renewal_backs_off_and_keeps_the_old_certificate() -> None:
    time = FakeTime(stop_after=6)
    ca = FakeCa(time)
    rot, published = rotator(time, ca)
    first = await rot.issue()
    ca.fail = 4
    with pytest.raises(_Done):
        await rot.run()
    assert time.sleeps[0] == pytest.approx(16 * 3600)
    assert time.sleeps[1:5] == [1.0, 2.0, 4.0, 8.0]
    assert rot.failures == 4
    assert published[0] is first
    # the renewal that finally worked, 15 seconds late, sets the next renewal time
    assert published[1].received_at == T0 + dt.timedelta(hours=16, seconds=15)
    assert time.sleeps[5] == pytest.approx(16 * 3600)


async def test_short_lived_certificates_retry_within_their_lifetime() -> None:
    time = FakeTime(stop_after=8)
    ca = FakeCa(time, lifetime=dt.timedelta(seconds=30))
    rot, _ = rotator(time, ca)
    await rot.issue()
    ca.fail = 100
    with pytest.raises(_Done):
        await rot.run()
    assert time.sleeps[0] == pytest.approx(20)
    left = 10.0
    for delay in time.sleeps[1:]:
        assert delay <= max(left / 4, identity.MIN_RENEW_DELAY) + 1e-3
        left -= delay
    # past expiry it keeps trying at the initial pace
    assert left < 0 or time.sleeps[-1] <= left


def test_renewal_time_is_counted_from_receipt_not_the_backdated_not_before() -> None:
    assert identity.renewal_time(T0, T0 + dt.timedelta(seconds=9)) == T0 + dt.timedelta(
        seconds=6)


def test_retry_delay_after_expiry_is_the_initial_one() -> None:
    assert identity.retry_delay(10, T0, T0 - dt.timedelta(seconds=1)) == identity.RETRY_INITIAL
    assert identity.retry_delay(20, T0, T0 + 10 * DAY) == identity.RETRY_MAX


def _signed(ca: KeyPair, csr_pem: bytes, lifetime: dt.timedelta) -> SignedCertificate:
    cert = sign_leaf(ca, x509.load_pem_x509_csr(csr_pem), T0, lifetime)
    return SignedCertificate(KeyPair(cert, ca.key).cert_pem(), ca.cert_pem(),
                             cert.not_valid_after_utc)


def test_accept_refuses_what_the_key_cannot_serve() -> None:
    ca = new_root_ca("test", T0 - DAY, 365 * DAY)
    key, csr = keygen.new_request("backend-1")
    _other, other_csr = keygen.new_request("backend-1")
    good = _signed(ca, csr, DAY)
    assert keygen.accept(key, good, T0).chain_pem == good.chain_pem
    with pytest.raises(ControlPlaneProtocolError, match="for another key"):
        keygen.accept(key, _signed(ca, other_csr, DAY), T0)
    with pytest.raises(ControlPlaneProtocolError, match="expired"):
        keygen.accept(key, good, T0 + 2 * DAY)
    with pytest.raises(ControlPlaneProtocolError, match="does not parse"):
        keygen.accept(key, SignedCertificate(b"garbage", b"", T0), T0)
    with pytest.raises(ControlPlaneProtocolError, match="trust bundle"):
        keygen.accept(key, SignedCertificate(good.chain_pem, b"nope", T0), T0)


# -- Renew from the control plane ---------------------------------------------------------

class ManualTime:
    """A clock whose sleeps last until the test moves it past their end."""

    def __init__(self) -> None:
        self.now = T0
        self._sleepers: list[tuple[dt.datetime, asyncio.Future[None]]] = []

    def clock(self) -> dt.datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        entry = (self.now + dt.timedelta(seconds=seconds), future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
        for until, future in self._sleepers:
            if until <= self.now and not future.done():
                future.set_result(None)

    @property
    def sleeping(self) -> int:
        return sum(1 for _, f in self._sleepers if not f.done())


class GatedCa(FakeCa):
    """A CA whose answers wait for ``gate`` while it is closed."""

    def __init__(self, time: ManualTime) -> None:
        super().__init__(time)  # type: ignore[arg-type]
        self.gate = asyncio.Event()
        self.gate.set()
        self.asked = 0

    async def sign(self, csr_pem: bytes) -> SignedCertificate:
        self.asked += 1
        await self.gate.wait()
        return await super().sign(csr_pem)


async def settle(check: Callable[[], bool], what: str) -> None:
    """Let the event loop run until ``check()`` holds (no clock involved: the rotator's
    sleeps are ManualTime's)."""
    for _ in range(10_000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never reached: {what}")


def manual_rotator(time: ManualTime, ca: FakeCa) -> tuple[Rotator, list[Identity]]:
    published: list[Identity] = []
    rot = Rotator("backend-1", ca.sign, lambda ident, _trust: published.append(ident),
                  clock=time.clock, sleep=time.sleep, spread=2.0, rng=random.Random(7),
                  keys=in_process_request)
    return rot, published


async def test_renew_requests_in_a_row_cause_one_new_certificate_with_a_new_key() -> None:
    time = ManualTime()
    ca = GatedCa(time)
    rot, published = manual_rotator(time, ca)
    await rot.issue()
    task = asyncio.create_task(rot.run())
    try:
        await settle(lambda: time.sleeping == 1, "waiting for the scheduled renewal")
        for _ in range(5):
            rot.request_renewal()
        await settle(lambda: time.sleeping == 1 and time._sleepers[0][0] <= T0 + dt.timedelta(
            seconds=2), "the spread delay")
        rot.request_renewal()  # during the spread delay: still the same renewal
        time.advance(2.0)
        await settle(lambda: rot.renewals == 1 and time.sleeping == 1, "one renewal")
        assert ca.asked == 2 and len(published) == 2
        assert published[1].key_pem() != published[0].key_pem()
        # The next scheduled renewal counts from the new certificate, 16 h away.
        assert time._sleepers[0][0] == T0 + dt.timedelta(hours=16, seconds=2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_request_while_a_csr_is_in_flight_gets_one_more_renewal() -> None:
    time = ManualTime()
    ca = GatedCa(time)
    rot, _ = manual_rotator(time, ca)
    await rot.issue()
    task = asyncio.create_task(rot.run())
    try:
        await settle(lambda: time.sleeping == 1, "waiting for the scheduled renewal")
        ca.gate.clear()
        rot.request_renewal()
        await settle(lambda: time.sleeping == 1 and time._sleepers[0][0] <= T0 + dt.timedelta(
            seconds=2), "the spread delay")
        time.advance(2.0)
        await settle(lambda: ca.asked == 2, "the CSR of the requested renewal in flight")
        rot.request_renewal()
        rot.request_renewal()  # the CA may have changed since that CSR: one more, not two
        ca.gate.set()
        await settle(lambda: rot.renewals == 1 and time.sleeping == 1, "the first renewal")
        time.advance(2.0)
        await settle(lambda: rot.renewals == 2 and time.sleeping == 1, "the second one")
        assert ca.asked == 3
        assert time._sleepers[0][0] > time.now + dt.timedelta(hours=15)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_requested_renewal_that_fails_backs_off_like_a_scheduled_one() -> None:
    time = ManualTime()
    ca = GatedCa(time)
    rot, published = manual_rotator(time, ca)
    first = await rot.issue()
    task = asyncio.create_task(rot.run())
    try:
        await settle(lambda: time.sleeping == 1, "waiting for the scheduled renewal")
        ca.fail = 2
        rot.request_renewal()
        await settle(lambda: time.sleeping == 1 and time._sleepers[0][0] <= T0 + dt.timedelta(
            seconds=2), "the spread delay")
        time.advance(2.0)
        await settle(lambda: rot.failures == 1 and time.sleeping == 1, "a failure")
        assert time._sleepers[0][0] == time.now + dt.timedelta(seconds=identity.RETRY_INITIAL)
        for _ in range(3):
            rot.request_renewal()  # more requests during the backoff: no extra attempts
        time.advance(identity.RETRY_INITIAL)
        await settle(lambda: rot.failures == 2 and time.sleeping == 1, "a second failure")
        time.advance(2 * identity.RETRY_INITIAL)
        await settle(lambda: rot.renewals == 1 and time.sleeping == 1, "the renewal")
        assert ca.asked == 4 and published[0] is first and len(published) == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
