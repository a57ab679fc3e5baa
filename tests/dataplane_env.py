"""A one-zone data plane for behaviour tests: a real zone CP in-process, real agents with
real Envoys, and small test applications behind them (``tests/dataplane_apps.py``).

``DataplaneEnv`` starts sidecars (``gossamer proxy run`` processes, started the way
``tests.integration.agent_env`` starts them) for Dataplanes described by ``Member``,
applies and deletes policies through the zone CP's resource manager, and waits for a
change to *reach Envoy*: ``converged()`` compares, resource by resource, what the zone
CP would send now (``generate`` of each proxy's current context, versioned as the ADS
server versions it) with what Envoy reports in its ``/config_dump``: the versions of
active clusters and route configurations, active listeners by content and load
assignments by their hosts (see ``_content`` and ``_hosts`` for why), and no listener
or filter chain left draining (connections accepted under the old config). No sleeping:
every wait polls a condition with a deadline (``eventually``).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from google.protobuf.json_format import MessageToDict

from authority.token_authority import TokenAuthority
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.tokens import DATAPLANE
from tests.dataplane_apps import listen_port
from tests.integration.agent_env import AgentProcess, agent_process
from tests.integration.test_agent_zone import Zone
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane
from zone_cp.xds_resources import TYPE_URLS, desired_entries

SERVICE = "gossamer.io/service"


PROTOCOL = "gossamer.io/protocol"


DRAINING = r"^listener_manager\.total_(filter_chains|listeners)_draining$"


@dataclass(frozen=True)
class Member:
    """One Dataplane of the test: an inbound for ``service`` in front of ``app_port``
    (tags added to the service and protocol ones), and explicit outbounds by service."""

    name: str
    service: str
    app_port: int
    protocol: str = "http"
    tags: dict[str, str] = field(default_factory=dict)
    outbounds: dict[str, int] = field(default_factory=dict)
    mesh: str = "default"

    def document(self, inbound_port: int) -> dict[str, Any]:
        tags = {SERVICE: self.service, PROTOCOL: self.protocol, **self.tags}
        return {"type": "Dataplane", "mesh": self.mesh, "name": self.name, "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": inbound_port, "servicePort": self.app_port, "tags": tags}],
            "outbound": [{"port": port, "tags": {SERVICE: service}}
                         for service, port in self.outbounds.items()]}}


@dataclass
class Sidecar:
    member: Member
    agent: AgentProcess
    admin_port: int
    inbound_port: int

    @property
    def name(self) -> str:
        return self.member.name

    async def admin(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=5.0) as client:
            return await client.get(f"http://127.0.0.1:{self.admin_port}{path}")

    async def config_dump(self) -> dict[str, Any]:
        return dict((await self.admin("/config_dump?include_eds")).json())

    async def stats(self, pattern: str) -> dict[str, int]:
        """Envoy's counters and gauges whose names match the regex ``pattern``."""
        text = (await self.admin(f"/stats?filter={pattern}")).text
        out = {}
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if value.isdigit():
                out[key] = int(value)
        return out

    async def stat(self, name: str) -> int:
        """One counter or gauge (0 when Envoy has not created it)."""
        return (await self.stats(f"^{re.escape(name)}$")).get(name, 0)

    async def certificate_serials(self) -> set[str]:
        """Serial numbers of the workload certificates Envoy holds now (admin ``/certs``)."""
        certs = (await self.admin("/certs")).json().get("certificates", [])
        return {c["serial_number"] for entry in certs for c in entry.get("cert_chain", [])}


def envoy_versions(dump: dict[str, Any]) -> dict[str, dict[str, str]]:
    """type URL → resource name → version, for what Envoy has in use (warming or failed
    listeners are reported under a version that cannot match)."""
    out: dict[str, dict[str, str]] = {}
    for config in dump.get("configs", []):
        kind = config.get("@type", "")
        if kind.endswith("ClustersConfigDump"):
            out["clusters"] = {c["cluster"]["name"]: c["version_info"]
                               for c in config.get("dynamic_active_clusters", [])}
            for c in config.get("dynamic_warming_clusters", []):
                out["clusters"][c["cluster"]["name"]] = "warming"
        elif kind.endswith("ListenersConfigDump"):
            # A listener Envoy rejected and never had is listed with its error_state only.
            out["listeners"] = {
                item["name"]: ("warming" if "warming_state" in item
                               else _content(item["active_state"].get("listener", {})))
                for item in config.get("dynamic_listeners", [])
                if "warming_state" in item or "active_state" in item}
        elif kind.endswith("RoutesConfigDump"):
            out["routes"] = {r["route_config"]["name"]: r["version_info"]
                             for r in config.get("dynamic_route_configs", [])}
        elif kind.endswith("EndpointsConfigDump"):
            out["endpoints"] = {e["endpoint_config"]["cluster_name"]:
                                _hosts(e["endpoint_config"])
                                for e in config.get("dynamic_endpoint_configs", [])}
    return out


def _content(resource: dict[str, Any]) -> str:
    """A listener as canonical JSON: Envoy keeps a listener's old ``version_info`` when an
    update changes only its filter chains (it updates them in place), so listeners are
    compared by what they hold."""
    return json.dumps({k: v for k, v in resource.items() if k != "@type"}, sort_keys=True)


def _hosts(assignment: dict[str, Any]) -> str:
    """A load assignment's hosts by priority: Envoy's dump of EDS carries no version."""
    hosts = []
    for locality in assignment.get("endpoints", []):
        for lb in locality.get("lb_endpoints", []):
            address = lb["endpoint"]["address"]["socket_address"]
            hosts.append(f"{locality.get('priority', 0)}/{address['address']}:"
                         f"{address.get('port_value', 0)}")
    return " ".join(sorted(hosts))


def desired_versions(cp: ZoneControlPlane, member: Member) -> dict[str, dict[str, str]]:
    """What the zone CP would send this proxy now, versioned as its ADS server does
    (load assignments by hosts and listeners by content, as ``envoy_versions``)."""
    dataplane = cp.state.get("Dataplane", member.name, member.mesh)
    if dataplane is None:
        return {}
    generated = cp.ads.generated_for(dataplane)
    entries = desired_entries(generated)
    out = {kind: {name: entry.version for name, entry in entries[type_url].items()}
           for kind, type_url in TYPE_URLS.items()}
    out["endpoints"] = {name: _hosts(MessageToDict(m, preserving_proto_field_name=True))
                        for name, m in generated.endpoints.items()}
    out["listeners"] = {name: _content(MessageToDict(m, preserving_proto_field_name=True))
                        for name, m in generated.listeners.items()}
    return out


class DataplaneEnv:
    """A zone CP and the sidecars a test module starts in it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.zone = Zone(directory / "zone", listen_port())
        self.sidecars: dict[str, Sidecar] = {}
        self._stack = contextlib.AsyncExitStack()

    @property
    def cp(self) -> ZoneControlPlane:
        assert self.zone.cp is not None
        return self.zone.cp

    async def __aenter__(self) -> DataplaneEnv:
        await self.zone.start()
        self._stack.push_async_callback(self.zone.stop)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def token(self, member: Member, path: Path) -> Path:
        # The token vouches for the member's tags, so permissions may select by them.
        token, _ = await TokenAuthority(self.cp.manager, DATAPLANE, member.mesh).issue(
            member.service, 3600, name=member.name, tags=member.tags)
        path.write_text(token)
        return path

    async def start(self, *members: Member) -> list[Sidecar]:
        """Start a sidecar per member, for as long as the environment runs; return when
        every one serves its config."""
        return await self._start_all(members, self._stack)

    @contextlib.asynccontextmanager
    async def running(self, *members: Member) -> AsyncIterator[list[Sidecar]]:
        """Sidecars for one block: started (and serving) on entry, stopped on exit."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                yield await self._start_all(members, stack)
            finally:
                for member in members:
                    self.sidecars.pop(member.name, None)

    async def _start_all(self, members: Iterable[Member], stack: contextlib.AsyncExitStack
                         ) -> list[Sidecar]:
        started = [await self._start(m, stack) for m in members]
        await eventually(lambda: {f"dp:{s.member.mesh}:{s.name}" for s in started}
                         <= set(self.cp.agents.sessions), timeout=60,
                         what="every agent registered")
        await self.converged(*started, timeout=60)
        return started

    async def _start(self, member: Member, stack: contextlib.AsyncExitStack) -> Sidecar:
        directory = self.directory / member.name
        directory.mkdir(parents=True)
        inbound, admin = listen_port(), listen_port()
        dataplane = directory / "dataplane.yaml"
        dataplane.write_text(yaml.safe_dump(member.document(inbound)))
        token = await self.token(member, directory / "token")
        args = ["--dataplane", str(dataplane), "--cp", self.zone.url,
                "--token-file", str(token), "--cp-ca", str(self.zone.ca),
                "--admin-port", str(admin), "--drain-time", "1s",
                "--envoy-log-level", "warning"]
        agent = await stack.enter_async_context(agent_process(directory, args))
        sidecar = Sidecar(member, agent, admin, inbound)
        self.sidecars[member.name] = sidecar
        return sidecar

    async def converged(self, *sidecars: Sidecar, timeout: float = 20) -> None:
        """Wait until each sidecar's Envoy uses exactly the config the zone CP would send
        it now (all sidecars when none are named)."""
        chosen = sidecars or tuple(self.sidecars.values())

        async def same() -> bool:
            # A difference is raised, not returned: ``eventually`` reports the last one.
            for sidecar in chosen:
                if sidecar.agent.proc.returncode is not None:
                    raise AssertionError(f"{sidecar.name}'s agent exited: "
                                         f"{sidecar.agent.errors()[-2000:]}")
                want = desired_versions(self.cp, sidecar.member)
                have = envoy_versions(await sidecar.config_dump())
                if not want or any(_differs(k, v, have.get(k, {})) for k, v in want.items()):
                    raise AssertionError(f"{sidecar.name}: {_difference(want, have)}")
                # Connections accepted under a listener's old filter chains keep them
                # until Envoy has drained them (the agent's --drain-time).
                draining = await sidecar.stats(DRAINING)
                if any(draining.values()):
                    raise AssertionError(f"{sidecar.name} still draining: {draining}")
            return True

        await eventually(same, timeout=timeout, what="Envoy to use the zone CP's config")

    async def apply(self, *docs: dict[str, Any], converge: bool = True) -> list[Resource]:
        """Apply resources, wait until the zone CP's state holds them and (unless told
        not to) until the sidecars use the config that follows."""
        resources = [parse_document(doc) for doc in docs]
        for res in resources:
            await self.cp.manager.apply(res)
        await eventually(lambda: all(self._seen(r) for r in resources), timeout=10,
                         what="the zone CP's state to hold the change")
        if converge:
            await self.converged()
        return resources

    async def delete(self, *resources: Resource) -> None:
        for res in resources:
            await self.cp.manager.delete(res.type, res.name, res.mesh)
        await eventually(lambda: all(self.cp.state.get(r.type, r.name, r.mesh) is None
                                     for r in resources), timeout=10,
                         what="the zone CP's state to drop the resources")
        await self.converged()

    @contextlib.asynccontextmanager
    async def policy(self, *docs: dict[str, Any]) -> AsyncIterator[list[Resource]]:
        """Policies in force for a block: applied (and in Envoy) on entry, deleted (and
        gone from Envoy) on exit."""
        resources = await self.apply(*docs)
        try:
            yield resources
        finally:
            await self.delete(*resources)

    def _seen(self, res: Resource) -> bool:
        held = self.cp.state.get(res.type, res.name, res.mesh)
        return held is not None and held.spec == res.spec


def _differs(kind: str, want: dict[str, str], have: dict[str, str]) -> bool:
    if kind == "endpoints":  # Envoy also lists the inline assignments of static clusters
        return any(have.get(name) != hosts for name, hosts in want.items())
    return want != have


def _difference(want: dict[str, dict[str, str]], have: dict[str, dict[str, str]]) -> str:
    out = []
    for kind, resources in want.items():
        got = have.get(kind, {})
        missing = sorted(set(resources) - set(got))
        extra = sorted(set(got) - set(resources))
        stale = sorted(n for n in set(resources) & set(got) if resources[n] != got[n])
        if missing or extra or stale:
            out.append(f"{kind}: missing {missing} extra {extra} stale {stale}")
    return "; ".join(out) or "nothing wanted yet"

