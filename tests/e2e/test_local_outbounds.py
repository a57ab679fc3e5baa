"""``deploy.local``'s explicit outbounds (``Options.outbounds``), without root: the
Dataplane a workload registers carries exactly the ones given to it, valid for the real
model, and a bad one is refused with its problem named. The cross-zone bench measures
the captured path against one of these on the same sidecar."""

from __future__ import annotations

import pytest
import yaml

from deploy.local import launch
from deploy.local.topology import APP_PORT, demo
from gossamer.model.registry import parse_document
from proxy.redirect import defaults as redirect

T = demo()
WEB, BACKEND = T.workload("web-1"), T.workload("backend-1")


def _outbounds(workload_yaml: str) -> list[tuple[str | None, int, str]]:
    resource = parse_document(yaml.safe_load(workload_yaml))
    return [(str(ob.address), ob.port, ob.service)
            for ob in resource.spec.networking.outbound]  # type: ignore[attr-defined]


def test_only_the_named_workload_gets_its_outbounds_on_loopback() -> None:
    o = launch.Options(outbounds=(launch.ExplicitOutbound("web-1", "backend", 20001),
                                  launch.ExplicitOutbound("web-1", "db", 20002)))
    assert _outbounds(launch.dataplane_yaml(T, WEB, o)) == [
        ("127.0.0.1", 20001, "backend"), ("127.0.0.1", 20002, "db")]
    assert _outbounds(launch.dataplane_yaml(T, BACKEND, o)) == []
    assert _outbounds(launch.dataplane_yaml(T, WEB)) == []


@pytest.mark.parametrize("port", [0, 65536, APP_PORT, redirect.OUTBOUND_PORT,
                                  redirect.DNS_PORT])
def test_a_port_that_cannot_be_bound_is_refused_by_number(port: int) -> None:
    with pytest.raises(ValueError, match=f"port {port} "):
        launch.ExplicitOutbound("web-1", "backend", port)


def test_an_unknown_workload_or_a_port_used_twice_is_named() -> None:
    stray = launch.Options(outbounds=(launch.ExplicitOutbound("web-9", "backend", 20001),))
    with pytest.raises(ValueError, match="no workload 'web-9'"):
        launch.dataplane_yaml(T, WEB, stray)
    twice = launch.Options(outbounds=(launch.ExplicitOutbound("web-1", "backend", 20001),
                                      launch.ExplicitOutbound("web-1", "db", 20001)))
    with pytest.raises(ValueError, match="used twice"):
        launch.dataplane_yaml(T, WEB, twice)
