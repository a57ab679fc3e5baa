"""Other zones' ingresses advertised by name, resolved by the zone CP
(``zone_cp.ingress_names``) into the remote endpoints of ``MeshState``: one endpoint per
address, followed when the name's addresses change, kept through a failed lookup. The
resolver is the test's own (a dict); ``tests/integration/test_ingress_names.py`` resolves
a real name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gossamer.model.registry import parse_document
from gossamer.store.memory import MemoryStore
from proxy.context import RemoteZone
from tests.unit.test_mesh_state import ingress, state_of
from tests.waiting import eventually
from zone_cp.ingress_names import IngressNames, advertised_names
from zone_cp.mesh_state import MeshState

NAME = "ingress.east.example"


class Records:
    """A resolver over a dict: a missing name fails as the host resolver does."""

    def __init__(self, **records: tuple[str, ...]) -> None:
        self.records = {k.replace("_", "."): v for k, v in records.items()}
        self.asked: list[str] = []

    async def __call__(self, name: str) -> tuple[str, ...]:
        self.asked.append(name)
        if name not in self.records:
            raise OSError(f"{name}: Name or service not known")
        return self.records[name]


def remote(state: MeshState, service: str = "backend") -> tuple[RemoteZone, ...]:
    found = state.services("default").get(service)
    return found.remote if found else ()


def test_only_other_zones_names_are_resolved() -> None:
    docs = [ingress("east", "Ingress.East.Example.", {"backend": 1}),
            ingress("north", "192.168.2.1", {"backend": 1}),
            ingress("west", "ingress.west.example", {"backend": 1})]
    assert advertised_names([parse_document(d) for d in docs], "west") == {NAME}


def test_a_name_gives_one_endpoint_per_address_and_none_unresolved() -> None:
    docs = (ingress("east", NAME, {"backend": 3}),)
    assert remote(state_of(*docs)) == ()
    state = MeshState(MemoryStore(), "west",
                      names=lambda n: ("192.0.2.7", "192.0.2.8") if n == NAME else ())
    state._reset([parse_document(d) for d in
                  [{"type": "Mesh", "name": "default"}, *docs]])
    assert remote(state) == (RemoteZone("east", "192.0.2.7", 10001, 3),
                             RemoteZone("east", "192.0.2.8", 10001, 3))


@pytest.fixture
async def running() -> AsyncIterator[tuple[MeshState, IngressNames, Records]]:
    records = Records(ingress_east_example=("192.0.2.7",))
    names = IngressNames(records, interval=3600)  # no timer: the test drives the rounds
    state = MeshState(MemoryStore(), "west", names=names.addresses)
    state._reset([parse_document({"type": "Mesh", "name": "default"})])
    task = asyncio.create_task(names.run(state))
    try:
        yield state, names, records
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_new_name_is_resolved_at_once_and_followed(
        running: tuple[MeshState, IngressNames, Records]) -> None:
    state, names, records = running
    state._changed(parse_document(ingress("east", NAME, {"backend": 2})), False)
    await eventually(lambda: remote(state) == (RemoteZone("east", "192.0.2.7", 10001, 2),),
                     what="the ingress's name resolved into its endpoint")
    # The record changes: the next round (the timer's, shortened here) follows it, and
    # the listeners are told, so proxies get the new endpoints.
    bumps: list[object] = []
    state.listen(bumps.append)
    records.records[NAME] = ("192.0.2.9", "198.51.100.1")
    names.interval = 0.05
    await eventually(lambda: [r.address for r in remote(state)] == ["192.0.2.9",
                                                                     "198.51.100.1"],
                     what="the new addresses of the name")
    assert bumps
    # Rounds with nothing new tell nobody.
    settled = len(bumps)
    rounds = names.rounds
    await eventually(lambda: names.rounds >= rounds + 3, what="three more rounds")
    assert len(bumps) == settled


async def test_a_failed_lookup_keeps_the_last_addresses(
        running: tuple[MeshState, IngressNames, Records]) -> None:
    state, names, records = running
    state._changed(parse_document(ingress("east", NAME, {"backend": 1})), False)
    await eventually(lambda: remote(state), what="the name resolved")
    del records.records[NAME]
    names.interval = 0.05
    asked = len(records.asked)
    await eventually(lambda: len(records.asked) >= asked + 3, what="lookups that fail")
    assert [r.address for r in remote(state)] == ["192.0.2.7"]
    # An ingress whose name never resolved has no endpoint, and the others are unharmed.
    state._changed(parse_document(ingress("north", "ingress.north.example",
                                          {"backend": 1})), False)
    await eventually(lambda: "ingress.north.example" in records.asked,
                     what="the new name looked up")
    assert [r.zone for r in remote(state)] == ["east"]
