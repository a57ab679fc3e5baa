"""Dialing a service's replicas in turn (``gossamer.failover``) and the ``--global``
addresses of ``zone run`` that feed it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.run_zone import run as zone_run
from gossamer.failover import Failover


def test_each_failure_moves_to_the_next_address_and_a_full_round_says_so() -> None:
    order = Failover(["a", "b", "c"])
    assert order.current == "a"
    assert order.failed() is False and order.current == "b"
    assert order.failed() is False and order.current == "c"
    assert order.failed() is True and order.current == "a"  # all three failed: back off


def test_a_success_starts_a_new_round_from_where_it_is() -> None:
    order = Failover(["a", "b"])
    assert order.failed() is False  # a refused; b connects
    order.succeeded()
    assert order.failed() is False and order.current == "a"  # b broke: a, no backoff yet
    assert order.failed() is True and order.current == "b"


def test_one_address_backs_off_after_every_failure() -> None:
    order = Failover(["only"])
    assert [order.failed() for _ in range(3)] == [True, True, True]
    assert order.current == "only"


def test_no_address_is_refused() -> None:
    with pytest.raises(ValueError, match="no address"):
        Failover([])


@given(st.integers(1, 5), st.lists(st.booleans(), max_size=40))
def test_every_address_is_tried_before_a_backoff(n: int, successes: list[bool]) -> None:
    """Between two backoffs (with no success in between) each address is dialled once."""
    order = Failover(list(range(n)))
    tried: list[int] = []
    for success in successes:
        tried.append(order.current)
        if success:
            order.succeeded()
            tried = []
        elif order.failed():
            assert sorted(tried[-n:]) == list(range(n))
            tried = []


def _global_urls(*args: str) -> tuple[str, ...]:
    """``--global`` as ``zone run`` parses and checks it (the command is not run)."""
    ctx = zone_run.make_context("run", ["--zone", "east", *args])
    urls = ctx.params["global_urls"]
    assert isinstance(urls, tuple)
    return urls


def test_global_takes_repeated_and_comma_separated_addresses() -> None:
    assert _global_urls("--global", "grpcs://g1:5685, grpcs://g2:5685",
                        "--global", "grpcs://[::1]:5685", "--global", "grpcs://g1:5685") == (
        "grpcs://g1:5685", "grpcs://g2:5685", "grpcs://[::1]:5685")


def test_global_addresses_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOSSAMER_GLOBAL_ADDRESS", "grpcs://g1:5685,grpcs://g2:5685 grpcs://g3:1")
    assert _global_urls() == ("grpcs://g1:5685", "grpcs://g2:5685", "grpcs://g3:1")


@pytest.mark.parametrize(("value", "says"), [
    ("grpcs://g1:5685,grpc://g2:5685", "plaintext grpc://"),
    ("grpcs://g1:5685,g2", "expected grpcs://HOST:PORT"),
    (",", "no address"),
])
def test_a_bad_global_address_is_named(value: str, says: str) -> None:
    with pytest.raises(click.BadParameter, match=says):
        _global_urls("--global", value)


def _ads(**overrides: object) -> dict[str, object]:
    from proxy.agent.bootstrap import ads_cluster
    from tests.unit.test_agent_bootstrap import params

    return ads_cluster(params(**overrides))  # type: ignore[arg-type]


def test_envoy_dials_every_cp_address_and_accepts_a_certificate_for_any() -> None:
    cluster: dict[str, Any] = _ads(cp_host="10.0.0.1",
                                   cp_alternates=(("10.0.0.2", 5679), ("10.0.0.1", 5680)))
    assert cluster["type"] == "STATIC"
    endpoints = [e["endpoint"]["address"]["socket_address"]
                 for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    assert endpoints == [{"address": "10.0.0.1", "port_value": 5678},
                         {"address": "10.0.0.2", "port_value": 5679},
                         {"address": "10.0.0.1", "port_value": 5680}]
    tls = cluster["transport_socket"]["typed_config"]
    sans = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "IP_ADDRESS", "matcher": {"exact": "10.0.0.1"}},
                    {"san_type": "IP_ADDRESS", "matcher": {"exact": "10.0.0.2"}}]
    assert "sni" not in tls


def test_a_name_among_the_cp_addresses_is_resolved_by_envoy() -> None:
    cluster: dict[str, Any] = _ads(cp_host="cp-1.example.com",
                                   cp_alternates=(("10.0.0.2", 5678),))
    assert cluster["type"] == "STRICT_DNS"
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "cp-1.example.com"
    assert [s["san_type"] for s in tls["common_tls_context"]["validation_context"][
        "match_typed_subject_alt_names"]] == ["DNS", "IP_ADDRESS"]


def test_cp_takes_repeated_and_comma_separated_addresses(tmp_path: Path) -> None:
    """``--cp`` of ``ingress run`` (``proxy run`` shares the option): the first address is
    ``cp``, the others, once each, ``cp_alternates``."""
    from cli import run_ingress
    from cli.agent_options import AgentOptions
    from proxy.agent.cp_client import ControlPlaneAddress

    ca = tmp_path / "ca.pem"
    ca.write_text((Path(__file__).parent / "golden" / "agent" / "cp-ca.pem").read_text())
    token = tmp_path / "zone.token"
    token.write_text("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJlYXN0In0.c2ln\n")
    ctx = run_ingress.run.make_context("run", [
        "--cp", "https://10.0.0.1:5678, https://cp-2.example.com:5678",
        "--cp", "https://10.0.0.1:5678", "--token-file", str(token), "--cp-ca", str(ca)])
    assert ctx.params["cp"] == ("https://10.0.0.1:5678", "https://cp-2.example.com:5678")
    agent = AgentOptions(cp=ctx.params["cp"], token_file=token, cp_ca=ca, work_dir=None,
                         admin_port=None, envoy_binary="/bin/true", concurrency=1,
                         envoy_log_level="info", drain_time=1.0, log_level="info")
    settings = run_ingress.build_settings(run_ingress.IngressOptions(
        agent=agent, name="edge", listen=("127.0.0.1", 10001), advertise=None))
    assert settings.cp == ControlPlaneAddress("10.0.0.1", 5678)
    assert settings.cp_alternates == (ControlPlaneAddress("cp-2.example.com", 5678),)
