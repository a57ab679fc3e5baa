"""The zone ingress without sockets: its Envoy resources (golden files and behaviour), the
services it offers, how its tokens are judged, its registration at the zone CP (memory
store, ``MeshState`` and ``IngressRegistry`` as the zone CP wires them), its bootstrap
and its command's input checks.

Regenerate the goldens after an intended change with ``GOSSAMER_UPDATE_GOLDEN=1 pytest
tests/unit/test_ingress.py`` and review the diff. ``tests/integration/test_ingress.py``
feeds the same scenarios to a real Envoy and runs the whole thing.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf.json_format import MessageToDict

from authority.token_authority import TokenAuthority
from cli.main import main
from cli.run_ingress import zone_of
from gossamer.errors import GossamerError, NotFound
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from gossamer.tokens import DATAPLANE, ZONE, TokenRejected
from proxy.agent.cp_client import ControlPlaneAddress, Registration
from proxy.agent.errors import InputError
from proxy.context import SDS_CLUSTER, Endpoint, RemoteZone, Service
from proxy.envoy.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ProxyResources
from tests.builders import dataplane
from tests.waiting import eventually
from zone_cp.grpc_edge import status_code
from zone_cp.ingresses import IngressRegistry, IngressSession, available_services, refusal
from zone_cp.mesh_state import MeshState
from zone_ingress.agent import IngressSettings, ingress_bootstrap
from zone_ingress.envoy import IngressContext, generate_ingress

GOLDEN_DIR = Path(__file__).parent / "golden" / "ingress"
UPDATE = os.environ.get("GOSSAMER_UPDATE_GOLDEN") == "1"
SVC, PROTO = "gossamer.io/service", "gossamer.io/protocol"
KEY = "an-hmac-key-only-to-shape-a-test-token"


def endpoint(address: str, port: int, service: str, **tags: str) -> Endpoint:
    return Endpoint(address, port, {SVC: service, **tags})


EAST = RemoteZone("east", "192.168.1.1", 10001, instances=3)
SERVICES = {
    "default": {
        "backend": Service("backend", "http", (
            endpoint("10.0.0.1", 18080, "backend", version="v1"),
            endpoint("10.0.0.2", 18080, "backend", version="v2"),
            endpoint("backend-3.internal", 18080, "backend")),  # a hostname: not routable
            remote=(EAST,)),
        "grpc-api": Service("grpc-api", "grpc", (endpoint("10.0.0.3", 19090, "grpc-api"),)),
        "remote-only": Service("remote-only", "http", remote=(EAST,)),
        "named-only": Service("named-only", "tcp", (endpoint("db.internal", 5432,
                                                             "named-only"),)),
    },
    "payments": {"ledger": Service("ledger", "tcp", (endpoint("10.1.0.1", 15432, "ledger"),))},
}


@dataclass(frozen=True)
class Scenario:
    name: str
    ctx: IngressContext


SCENARIOS = [
    Scenario("two-meshes", IngressContext("east-ingress", "east", "0.0.0.0", 10001, SERVICES)),
    Scenario("specific-address",
             IngressContext("east-ingress", "east", "10.0.0.9", 10443,
                            {"default": {"backend": SERVICES["default"]["backend"]}})),
    Scenario("no-service", IngressContext("east-ingress", "east", "0.0.0.0", 10001, {})),
]
SCENARIO_NAMES = [s.name for s in SCENARIOS]


def as_data(resources: ProxyResources) -> dict[str, Any]:
    short = {LISTENER_TYPE: "listeners", CLUSTER_TYPE: "clusters", ENDPOINT_TYPE: "endpoints"}
    out: dict[str, Any] = {v: {} for v in short.values()}
    out["routes"] = {}
    for type_url, name, message in resources.items():
        out[short[type_url]][name] = json.loads(json.dumps(
            MessageToDict(message, preserving_proto_field_name=True)))
    return out


def as_yaml(resources: ProxyResources) -> str:
    import yaml

    return yaml.safe_dump(as_data(resources), sort_keys=True, width=100)


# --- Envoy resources ---------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_NAMES)
def test_golden(scenario: Scenario) -> None:
    path = GOLDEN_DIR / f"{scenario.name}.yaml"
    text = as_yaml(generate_ingress(scenario.ctx))
    if UPDATE and not os.environ.get("CI"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden {path}; run with GOSSAMER_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), (
        f"{scenario.name}: generated resources differ from {path}; if the change is "
        "intended, regenerate with GOSSAMER_UPDATE_GOLDEN=1 and review the diff")


def test_no_stale_goldens() -> None:
    assert {p.stem for p in GOLDEN_DIR.glob("*.yaml")} == set(SCENARIO_NAMES)


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*node.keys(), *(s for v in node.values() for s in _strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_one_chain_per_routable_service_matching_its_sni() -> None:
    data = as_data(generate_ingress(SCENARIOS[0].ctx))
    [listener] = data["listeners"].values()
    chains = {tuple(c["filter_chain_match"]["server_names"]): c for c in listener["filter_chains"]}
    assert sorted(chains) == [("backend.default.mesh",), ("grpc-api.default.mesh",),
                              ("ledger.payments.mesh",)]
    for (server_name,), chain in chains.items():
        assert chain["filter_chain_match"]["transport_protocol"] == "tls"
        [proxy] = chain["filters"]
        assert proxy["typed_config"]["cluster"] == server_name
    assert [f["name"] for f in listener["listener_filters"]] == [
        "envoy.filters.listener.tls_inspector"]
    assert listener["default_filter_chain"]["filters"][0]["name"] == (
        "envoy.filters.network.direct_response")
    assert sorted(data["clusters"]) == sorted(data["endpoints"]) == sorted(
        name for (name,) in chains)


def test_nothing_terminates_tls_or_holds_a_secret() -> None:
    for scenario in SCENARIOS:
        text = " ".join(_strings(as_data(generate_ingress(scenario.ctx))))
        for word in ("transport_socket", "sds", "tls_certificate", "DownstreamTlsContext",
                     "UpstreamTlsContext", SDS_CLUSTER):
            assert word not in text, (scenario.name, word)


def test_the_ingress_sends_to_local_instances_only() -> None:
    data = as_data(generate_ingress(SCENARIOS[0].ctx))
    backend = data["endpoints"]["backend.default.mesh"]
    [locality] = backend["endpoints"]
    assert locality["locality"] == {"zone": "east"}
    addresses = [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]]
    assert addresses == [{"address": "10.0.0.1", "port_value": 18080},
                         {"address": "10.0.0.2", "port_value": 18080}]
    assert "192.168.1.1" not in json.dumps(data)  # the other zone's ingress: never


def test_a_new_instance_changes_one_load_assignment_only() -> None:
    before = generate_ingress(SCENARIOS[0].ctx)
    services = {m: dict(s) for m, s in SERVICES.items()}
    ledger = services["payments"]["ledger"]
    services["payments"]["ledger"] = Service("ledger", "tcp", (
        *ledger.endpoints, endpoint("10.1.0.2", 15432, "ledger")))
    after = generate_ingress(IngressContext("east-ingress", "east", "0.0.0.0", 10001, services))
    changed = [(t, n) for t, n, m in after.items() if before.by_type()[t].get(n) != m]
    assert changed == [(ENDPOINT_TYPE, "ledger.payments.mesh")]


# --- what the ingress offers -------------------------------------------------------------

def test_available_services_count_routable_local_instances() -> None:
    offered = [(a.mesh, dict(a.tags), a.instances) for a in available_services(SERVICES)]
    assert offered == [
        ("default", {SVC: "backend", PROTO: "http"}, 2),
        ("default", {SVC: "grpc-api", PROTO: "grpc"}, 1),
        ("payments", {SVC: "ledger", PROTO: "tcp"}, 1),
    ]


# --- how tokens are judged ---------------------------------------------------------------

def test_refusals_say_what_is_wrong_and_what_to_do() -> None:
    import jwt

    dataplane = jwt.encode({"kind": "dataplane", "sub": "backend"}, KEY, algorithm="HS256")
    wrong_key = refusal(TokenRejected("unknown-key", "signed by unknown key 'x'"), dataplane,
                        "east")
    assert status_code(wrong_key) is grpc.StatusCode.PERMISSION_DENIED
    assert "not a dataplane token" in wrong_key.detail
    assert "gossamer token zone --zone east --scope ingress" in wrong_key.detail
    scope = refusal(TokenRejected("wrong-scope", "token lacks the 'ingress' scope"), "t", "east")
    assert status_code(scope) is grpc.StatusCode.PERMISSION_DENIED
    assert "lacks the 'ingress' scope" in scope.detail
    expired = refusal(TokenRejected("expired", "token 1 expired"), "t", "east")
    assert status_code(expired) is grpc.StatusCode.UNAUTHENTICATED and "expired" in expired.detail


# --- registration at the zone CP ---------------------------------------------------------

@dataclass
class Zone:
    manager: ResourceManager
    state: MeshState
    registry: IngressRegistry
    zone_tokens: TokenAuthority

    async def token(self, zone: str = "west", scopes: tuple[str, ...] = ("ingress",)) -> str:
        token, _ = await self.zone_tokens.issue(zone, 3600, scopes)
        return token

    async def register(self, token: str, name: str = "west-ingress",
                       **networking: Any) -> IngressSession:
        doc = {"type": "ZoneIngress", "name": name,
               "networking": {"address": "10.0.0.9", "port": 10001, **networking}}
        return await self.registry.register(parse_document(doc), token, 0.0)

    async def stored(self, name: str = "west-ingress") -> Resource | None:
        try:
            return await self.manager.get("ZoneIngress", name)
        except NotFound:
            return None


@pytest.fixture
async def zone() -> AsyncIterator[Zone]:
    manager = ResourceManager(MemoryStore())
    await manager.apply(parse_document({"type": "Mesh", "name": "default"}))
    # In one store: the signing side publishes the TokenTrust the zone verifies with.
    tokens = TokenAuthority(manager, ZONE, publish_trust=True)
    await tokens.keys()
    state = MeshState(manager.store, "west")
    registry = IngressRegistry(manager, state, "west", federated=True)
    tasks = [asyncio.create_task(state.run()), asyncio.create_task(registry.run())]
    yield Zone(manager, state, registry, tokens)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def offered(res: Resource | None) -> list[tuple[str, int]]:
    assert res is not None and isinstance(res.spec, ZoneIngressSpec)
    return [(a.tags[SVC], a.instances) for a in res.spec.available_services]


async def test_a_registered_ingress_is_stored_and_follows_the_services(zone: Zone) -> None:
    await zone.manager.apply(dataplane("backend-1", "backend", address="10.0.0.1",
                                       tags={PROTO: "http"}))
    session = await zone.register(await zone.token())
    assert session.node_id == "ingress:west-ingress" and session.mesh == ""
    stored = await zone.stored()
    assert stored is not None and stored.labels == {}
    assert isinstance(stored.spec, ZoneIngressSpec) and stored.spec.zone == "west"
    await eventually(lambda: _offers(zone, [("backend", 1)]))

    await zone.manager.apply(dataplane("backend-2", "backend", address="10.0.0.2",
                                       tags={PROTO: "http"}))
    await zone.manager.apply(dataplane("web-1", "web", address="10.0.0.3",
                                       tags={PROTO: "http"}))
    await eventually(lambda: _offers(zone, [("backend", 2), ("web", 1)]))
    await zone.manager.delete("Dataplane", "backend-1", "default")
    await eventually(lambda: _offers(zone, [("backend", 1), ("web", 1)]))

    ctx = zone.registry.context(session.node_id)
    assert ctx is not None and ctx.address == "10.0.0.9" and ctx.zone == "west"
    resources = zone.registry.generate(session.node_id)
    assert resources is not None and set(resources.clusters) == {"backend.default.mesh",
                                                                 "web.default.mesh"}
    await zone.registry.unregister(session)
    assert await zone.stored() is None
    assert zone.registry.generate(session.node_id) is None


async def _offers(zone: Zone, expected: list[tuple[str, int]]) -> bool:
    return offered(await zone.stored()) == expected


async def test_the_agent_cannot_set_zone_or_services(zone: Zone) -> None:
    foreign = {"type": "ZoneIngress", "name": "west-ingress", "zone": "east",
               "networking": {"address": "10.0.0.9"}}
    with pytest.raises(GossamerError, match="names zone 'east'"):
        await zone.registry.register(parse_document(foreign), await zone.token(), 0.0)
    doc = {"type": "ZoneIngress", "name": "west-ingress",
           "labels": {"gossamer.io/origin": "zone", "team": "edge"},
           "networking": {"address": "10.0.0.9"},
           "availableServices": [{"tags": {SVC: "made-up"}, "instances": 50}]}
    await zone.registry.register(parse_document(doc), await zone.token(), 0.0)
    stored = await zone.stored()
    assert stored is not None and stored.labels == {"team": "edge"}
    assert offered(stored) == []


async def test_tokens_are_checked(zone: Zone) -> None:
    with pytest.raises(GossamerError, match="lacks the 'ingress' scope") as scope:
        await zone.register(await zone.token(scopes=("cp",)))
    assert status_code(scope.value) is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(GossamerError, match="not for this zone"):
        await zone.register(await zone.token("east"))
    dp_token, _ = await TokenAuthority(zone.manager, DATAPLANE, "default").issue("web", 60)
    with pytest.raises(GossamerError, match="not a dataplane token"):
        await zone.register(dp_token)
    with pytest.raises(GossamerError, match="token rejected"):
        await zone.register("not-a-token")
    assert await zone.stored() is None


async def test_admission_to_ads_needs_the_registering_token(zone: Zone) -> None:
    token = await zone.token()
    session = await zone.register(token)
    assert await zone.registry.admit(session.node_id, token) is session
    with pytest.raises(GossamerError, match="not the one the ingress registered with") as other:
        await zone.registry.admit(session.node_id, await zone.token())
    assert status_code(other.value) is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(GossamerError, match="not registered"):
        await zone.registry.admit("ingress:nobody", token)


async def test_a_name_is_held_by_its_token_and_never_taken_from_another_zone(
        zone: Zone) -> None:
    first = await zone.token()
    held = await zone.register(first)
    with pytest.raises(GossamerError, match="already connected with another token") as taken:
        await zone.register(await zone.token())
    assert status_code(taken.value) is grpc.StatusCode.ALREADY_EXISTS
    again = await zone.register(first)  # the same agent reconnecting takes over
    await zone.registry.unregister(held)  # the old session's end leaves the new one alone
    assert await zone.stored() is not None
    await zone.registry.unregister(again)

    synced = parse_document({"type": "ZoneIngress", "name": "east-ingress-1a2b",
                             "labels": {"gossamer.io/zone": "east",
                                        "gossamer.io/origin": "zone"},
                             "networking": {"address": "192.168.1.1"}})
    await zone.manager.apply(synced)
    with pytest.raises(GossamerError, match="another zone's ingress"):
        await zone.register(await zone.token(), name="east-ingress-1a2b")


async def test_a_standalone_zone_or_one_not_yet_in_sync_refuses(zone: Zone) -> None:
    standalone = IngressRegistry(zone.manager, zone.state, "west", federated=False)
    with pytest.raises(GossamerError, match="standalone") as refused:
        await standalone.register(parse_document({
            "type": "ZoneIngress", "name": "i", "networking": {"address": "10.0.0.9"}}),
            await zone.token(), 0.0)
    assert status_code(refused.value) is grpc.StatusCode.PERMISSION_DENIED
    token = await zone.token()
    await zone.manager.delete("TokenTrust", ZONE)
    with pytest.raises(GossamerError, match="not received the zone token keys") as early:
        await zone.register(token)
    assert status_code(early.value) is grpc.StatusCode.UNAVAILABLE  # the agent retries


async def test_the_cp_stopping_keeps_the_ingress_and_a_restart_expires_it_if_not_back(
        zone: Zone) -> None:
    token = await zone.token()
    session = await zone.register(token)
    zone.registry.stopping()
    await zone.registry.unregister(session)
    assert await zone.stored() is not None and zone.registry.sessions == {}

    # The next run: the leftover (and not another zone's synced ingress) waits for its agent.
    await zone.manager.apply(parse_document({
        "type": "ZoneIngress", "name": "east-ingress-1a2b", "networking": {
            "address": "192.168.1.1"},
        "labels": {"gossamer.io/zone": "east", "gossamer.io/origin": "zone"}}))
    again = IngressRegistry(zone.manager, zone.state, "west", federated=True)
    leftovers = await again.leftovers()
    assert leftovers == [("", "west-ingress")]
    back = await again.register(parse_document({
        "type": "ZoneIngress", "name": "west-ingress",
        "networking": {"address": "10.0.0.9"}}), await zone.token(), 1.0)  # any token
    assert await again.expire(leftovers) == [] and await zone.stored() is not None
    await again.unregister(back)  # gone while the CP runs: removed at once
    assert await zone.stored() is None

    # An ingress that does not come back is removed when its grace ends.
    await zone.register(token, name="lost")
    zone.registry.stopping()
    await zone.registry.unregister(zone.registry.sessions["ingress:lost"])
    third = IngressRegistry(zone.manager, zone.state, "west", federated=True)
    assert await third.expire(await third.leftovers()) == [("", "lost")]
    assert await zone.stored("lost") is None
    assert await zone.stored("east-ingress-1a2b") is not None


# --- the agent's inputs and bootstrap ----------------------------------------------------

def settings(**overrides: Any) -> IngressSettings:
    values: dict[str, Any] = dict(
        name="east-ingress", cp=ControlPlaneAddress("zone-cp.example.com", 5678), token="a.b.c",
        cp_ca_pem=b"-----BEGIN CERTIFICATE-----\n", address="0.0.0.0", port=10001,
        advertised=("203.0.113.7", 443), work_dir=Path("/tmp/ingress-unit"),
        envoy_binary=Path("/bin/true"), admin_port=9902)
    return IngressSettings(**{**values, **overrides})


def test_the_registered_document() -> None:
    assert json.loads(settings().registration_json()) == {
        "type": "ZoneIngress", "name": "east-ingress",
        "networking": {"address": "0.0.0.0", "port": 10001,
                       "advertisedAddress": "203.0.113.7", "advertisedPort": 443}}
    plain = json.loads(settings(address="10.0.0.9", advertised=None).registration_json())
    assert plain["networking"] == {"address": "10.0.0.9", "port": 10001}
    with pytest.raises(InputError, match="no valid ZoneIngress"):
        settings(advertised=("not_a host", 443)).registration_json()


def test_the_bootstrap_is_the_sidecars_without_sds() -> None:
    doc = ingress_bootstrap(settings(), Registration("", "east-ingress", "east",
                                                     "ingress:east-ingress"))
    assert doc["node"]["id"] == "ingress:east-ingress"
    assert doc["node"]["locality"] == {"zone": "east"}
    assert doc["node"]["metadata"] == {"gossamer.io/zone-ingress": "east-ingress"}
    names = [c["name"] for c in doc["static_resources"]["clusters"]]
    assert SDS_CLUSTER not in names and "gossamer_xds" in names
    assert doc["admin"]["address"]["socket_address"]["port_value"] == 9902
    assert doc["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"] == [
        {"key": "authorization", "value": "Bearer a.b.c"}]


# --- the command's input checks ----------------------------------------------------------

def test_the_default_name_comes_from_the_zone_token() -> None:
    import jwt

    assert zone_of(jwt.encode({"sub": "east", "kind": "zone"}, KEY, algorithm="HS256")) == "east"
    with pytest.raises(InputError, match="pass --name"):
        zone_of("a.b.c")


@pytest.mark.parametrize("flags, message", [
    (["--advertise", "0.0.0.0:10001"], "cannot dial a wildcard"),
    (["--listen", "10001"], "expected HOST:PORT"),
    (["--listen", "0.0.0.0:0"], "between 1 and 65535"),
    (["--name", "Bad_Name"], "Bad_Name"),
])
def test_bad_flags_are_usage_errors(tmp_path: Path, flags: list[str], message: str) -> None:
    token = tmp_path / "token"
    token.write_text("a.b.c")
    from gossamer.pki.serving import ensure_serving_tls

    ca = ensure_serving_tls(tmp_path / "tls", "zone", ["localhost"]).ca_file
    result = CliRunner().invoke(main, ["ingress", "run", "--cp", "https://localhost:5678",
                                       "--token-file", str(token), "--cp-ca", str(ca), *flags])
    assert result.exit_code == 2, result.output
    assert message in result.output
