"""The resolver's pure core forwarding other names: queries forwarded as sent, the answer
cache (aging TTLs, negative answers, caps, LRU eviction), failed forwards, and the
forwarder's inputs and outputs (resolv.conf, pycares results and statuses).
"""

from __future__ import annotations

import pycares
import pytest
from aiodns import error as ares
from dnslib import QTYPE, RCODE, RR, SOA, A

from dns.cache import AnswerCache
from dns.core import Forward, Resolver
from dns.errors import NOERROR, NXDOMAIN, SERVFAIL, UpstreamError
from dns.message import Question, Reply
from dns.upstream import _translate, parse_resolv_conf, reply_from_result
from tests.unit.dns_queries import TABLE, UDP, addresses, answer_of, ask, opt_of, query


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_other_names_are_forwarded_as_sent() -> None:
    sent = query("Example.org", "MX", qid=5)
    command = Resolver(TABLE).handle(sent, UDP)
    assert isinstance(command, Forward)
    assert command.query == sent
    assert command.question == Question((b"Example", b"org"), QTYPE.MX, 1)
    assert command.question.key == "example.org."


def _example_reply(ttl: int = 60) -> Reply:
    return Reply(NOERROR, answer=(RR("example.org", QTYPE.A, ttl=ttl, rdata=A("93.184.216.34")),))


def test_a_forwarded_answer_is_cached_with_aging_ttls_until_it_expires() -> None:
    clock = FakeClock()
    resolver = Resolver(TABLE, cache=AnswerCache(clock=clock))
    forward = resolver.handle(query("example.org", qid=1), UDP)
    assert isinstance(forward, Forward)
    first = answer_of(resolver.complete(forward, _example_reply(ttl=60)))
    assert first.header.id == 1 and first.header.aa == 0 and first.header.ra == 1
    assert addresses(first) == ["93.184.216.34"] and first.rr[0].ttl == 60

    clock.now += 25
    cached = ask(resolver, query("EXAMPLE.org", qid=2))
    assert cached.header.id == 2 and addresses(cached) == ["93.184.216.34"]
    assert cached.rr[0].ttl == 35

    clock.now += 35
    assert isinstance(resolver.handle(query("example.org"), UDP), Forward)


def test_the_cache_keys_on_type_and_holds_negative_answers_for_the_negative_ttl() -> None:
    clock = FakeClock()
    cache = AnswerCache(clock=clock, negative_ttl=10)
    resolver = Resolver(TABLE, cache=cache)
    forward = resolver.handle(query("gone.example.org"), UDP)
    assert isinstance(forward, Forward)
    assert answer_of(resolver.complete(forward, Reply(NXDOMAIN))).header.rcode == RCODE.NXDOMAIN
    assert isinstance(resolver.handle(query("gone.example.org", "AAAA"), UDP), Forward)
    assert ask(resolver, query("gone.example.org")).header.rcode == RCODE.NXDOMAIN
    clock.now += 10
    assert isinstance(resolver.handle(query("gone.example.org"), UDP), Forward)


def test_negative_answers_with_an_soa_live_for_its_minimum() -> None:
    clock = FakeClock()
    cache = AnswerCache(clock=clock, negative_ttl=100)
    question = Question((b"x", b"org"), QTYPE.A, 1)
    soa = RR("org", QTYPE.SOA, ttl=900, rdata=SOA("a.org", "b.org", (1, 2, 3, 4, 7)))
    cache.put(question, Reply(NXDOMAIN, authority=(soa,)))
    clock.now += 6
    assert cache.get(question) is not None
    clock.now += 1
    assert cache.get(question) is None


def test_failures_and_zero_ttls_are_not_cached_and_ttls_are_capped() -> None:
    clock = FakeClock()
    cache = AnswerCache(clock=clock, max_ttl=30)
    question = Question((b"example", b"org"), QTYPE.A, 1)
    cache.put(question, Reply(SERVFAIL))
    cache.put(question, _example_reply(ttl=0))
    assert cache.get(question) is None and len(cache) == 0
    cache.put(question, _example_reply(ttl=86400))
    clock.now += 30
    assert cache.get(question) is None


def test_the_cache_evicts_the_least_recently_used() -> None:
    cache = AnswerCache(max_entries=2, clock=FakeClock())
    a, b, c = (Question((name, b"org"), QTYPE.A, 1) for name in (b"a", b"b", b"c"))
    cache.put(a, _example_reply())
    cache.put(b, _example_reply())
    assert cache.get(a) is not None  # a is now the most recently used
    cache.put(c, _example_reply())
    assert len(cache) == 2
    assert cache.get(b) is None and cache.get(a) is not None and cache.get(c) is not None


def test_a_failed_forward_is_servfail_and_mesh_answers_never_touch_the_cache() -> None:
    resolver = Resolver(TABLE)
    forward = resolver.handle(query("example.org", edns=1232), UDP)
    assert isinstance(forward, Forward)
    failed = answer_of(resolver.fail(forward))
    assert failed.header.rcode == RCODE.SERVFAIL and opt_of(failed) is not None
    ask(resolver, query("backend.mesh"))
    assert len(resolver.cache) == 0


def test_resolv_conf_nameservers_are_read_in_order() -> None:
    text = (
        "# generated\nsearch example.org\nnameserver 10.0.0.2\n"
        "nameserver   fe80::1%eth0  # link-local\nnameserver bogus\noptions ndots:2\n"
        "nameserver 10.0.0.3;comment\n"
    )
    assert parse_resolv_conf(text) == ["10.0.0.2", "fe80::1%eth0", "10.0.0.3"]


def test_pycares_results_become_dnslib_records() -> None:
    result = pycares.DNSResult(
        answer=[
            pycares.DNSRecord("www.example.org", 5, 1, 30, pycares.CNAMERecordData("example.org")),
            pycares.DNSRecord("example.org", 1, 1, 30, pycares.ARecordData("93.184.216.34")),
            pycares.DNSRecord("example.org", 16, 1, 30, pycares.TXTRecordData(b"x" * 300)),
            pycares.DNSRecord("example.org", 52, 1, 30, pycares.TLSARecordData(3, 1, 1, b"k")),
        ],
        authority=[],
        additional=[],
    )
    reply = reply_from_result(result)
    assert reply.rcode == NOERROR
    assert [QTYPE[rr.rtype] for rr in reply.answer] == ["CNAME", "A", "TXT"]  # TLSA left out
    assert [len(chunk) for chunk in reply.answer[2].rdata.data] == [255, 45]


def test_c_ares_statuses_become_answers_or_errors() -> None:
    assert _translate("x", ares.DNSError(ares.ARES_ENOTFOUND, "nx")).rcode == NXDOMAIN
    assert _translate("x", ares.DNSError(ares.ARES_ENODATA, "none")).rcode == NOERROR
    with pytest.raises(UpstreamError) as refused:
        _translate("x", ares.DNSError(ares.ARES_EREFUSED, "refused"))
    assert refused.value.rcode == RCODE.REFUSED
    with pytest.raises(UpstreamError) as timeout:
        _translate("x", ares.DNSError(ares.ARES_ETIMEOUT, "timeout"))
    assert timeout.value.rcode == SERVFAIL and timeout.value.retryable

