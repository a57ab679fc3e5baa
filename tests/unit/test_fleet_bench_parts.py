"""The fleet benchmark's pure parts: the histogram quantile it reports loop lag with, its
watches (who a change affects, when a proxy holds it, refusing a change that is not
observable), and how its sidecars dial (two connections each, or shared) and what that
needs of the open-file limit, and the CPU time it charges per affected proxy."""

from __future__ import annotations

import math
import os
import resource
import time

import grpc
import pytest

from tests.bench.bench_fleet import cpu_per_proxy_ms
from tests.bench.fleet import stats
from tests.bench.fleet.changes import Samples
from tests.bench.fleet.processes import FD_SLACK, fds_needed, raise_nofile
from tests.bench.fleet.sidecar import Seen, Spec
from tests.bench.fleet.watches import arm
from tests.bench.fleet.worker import Dialer


def test_quantile_interpolates_like_prometheus_and_diffs_scrapes() -> None:
    before = {0.001: 10.0, 0.01: 10.0, 0.1: 10.0, math.inf: 10.0}
    after = {0.001: 60.0, 0.01: 110.0, 0.1: 110.0, math.inf: 110.0}
    window = stats.between(before, after)  # 50 under 1 ms, 50 between 1 and 10 ms
    assert stats.quantile(window, 0.5) == pytest.approx(0.001)
    assert stats.quantile(window, 0.99) == pytest.approx(0.001 + 0.009 * 49 / 50)
    assert math.isnan(stats.quantile(stats.between(after, after), 0.99))
    assert stats.added(window, window)[0.01] == 200


SPECS = [Spec("a", "svc-a", "10.0.0.1", ("svc-b",)), Spec("b", "svc-b", "10.0.0.2", ()),
         Spec("c", "svc-c", "10.0.0.3", ("svc-b",))]


def test_an_endpoint_watch_waits_for_the_callers_and_completes_on_the_last() -> None:
    held = {s.name: Seen(endpoints={"svc-b": frozenset({"10.0.0.2:18080"})}) for s in SPECS}
    watch = arm("w1", {"kind": "endpoint", "service": "svc-b", "address": "10.9.9.9:18080",
                       "present": True}, SPECS, held.get)
    assert watch.waiting == {"a", "c"}
    held["a"].endpoints["svc-b"] |= {"10.9.9.9:18080"}
    assert not watch.saw("a", held["a"], 1.0)
    assert not watch.saw("c", held["c"], 2.0)  # not there yet
    held["c"].endpoints["svc-b"] |= {"10.9.9.9:18080"}
    assert watch.saw("c", held["c"], 3.0) and watch.last == 3.0


def test_a_change_a_proxy_already_holds_is_refused() -> None:
    held = {s.name: Seen(connect_ms={"svc-b": 10_001}) for s in SPECS}
    with pytest.raises(ValueError, match="already holds the change"):
        arm("w2", {"kind": "timeout", "service": None, "ms": 10_001}, SPECS, held.get)
    watch = arm("w3", {"kind": "timeout", "service": "svc-b", "ms": 10_002}, SPECS, held.get)
    assert watch.waiting == {"b"}


async def test_each_sidecar_dials_two_connections_of_its_own_unless_told_to_share() -> None:
    credentials = grpc.ssl_channel_credentials()
    own = Dialer("127.0.0.1:1", credentials, None)  # channels connect lazily: no server
    a, b = own.channels(0), own.channels(1)
    assert a.owned and a.agent is not a.ads
    assert {id(a.agent), id(a.ads)}.isdisjoint({id(b.agent), id(b.ads)})
    await a.close()
    await b.close()
    shared = Dialer("127.0.0.1:1", credentials, 2)
    x, y, z = (shared.channels(i) for i in range(3))
    assert not x.owned and x.agent is x.ads is y.agent is y.ads
    assert z.agent is not x.agent
    await shared.close()


def test_open_files_two_per_sidecar_and_a_hard_limit_too_low_is_named() -> None:
    assert fds_needed(1000, None) == 2000 + FD_SLACK
    assert fds_needed(1000, 50) == 21 + FD_SLACK
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_nofile(soft)  # enough already: nothing changes
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)
    if hard != resource.RLIM_INFINITY:
        with pytest.raises(RuntimeError, match="--per-channel"):
            raise_nofile(hard + 1)


def test_cpu_seconds_grows_with_work_and_is_charged_per_affected_proxy() -> None:
    before = stats.cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn 0.2 s of this process's CPU
        pass
    assert stats.cpu_seconds(os.getpid()) - before >= 0.15
    samples = Samples(affected=[10, 30], cpu=[{"zone_cps": 0.2, "workers": 0.1},
                                               {"zone_cps": 0.6, "workers": 0.3}])
    assert cpu_per_proxy_ms(samples) == {"zone_cps": 20.0, "workers": 10.0}
