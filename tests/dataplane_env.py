"""A one-zone data plane for behaviour tests: a real zone CP in-process, real agents with
real Envoys, and small test applications behind them.

``DataplaneEnv`` starts sidecars (``gossamer proxy run`` processes, started the way
``tests.integration.test_agent`` starts them) for Dataplanes described by ``Member``,
applies and deletes policies through the zone CP's resource manager, and waits for a
change to *reach Envoy*: ``converged()`` compares, resource by resource, what the zone
CP would send now (``generate`` of each proxy's current context, versioned as the ADS
server versions it) with what Envoy reports in its ``/config_dump``: the versions of
active clusters and route configurations, active listeners by content and load
assignments by their hosts (see ``_content`` and ``_hosts`` for why), and no listener
or filter chain left draining (connections accepted under the old config). No sleeping:
every wait polls a condition with a deadline (``eventually``).

The applications run in threads so the tests' event loop (which also runs the zone CP)
never blocks on them:

- ``HttpApp``: answers JSON ``{"instance", "path", "headers"}``; ``/flaky`` fails every
  other request with 503 (per instance), ``/slow/<ms>`` answers after ``ms``,
  ``/fail-on/<instance>`` is 503 on that instance only, ``/health`` answers
  ``health_status``; it counts requests per path.
- ``EchoApp``: a TCP service that answers each read with ``<instance>:<data>``.
- ``OtlpReceiver``: an OTLP/gRPC trace receiver (``TraceServiceServicer``) that keeps
  every span it is sent, with its resource's ``service.name``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import random
import re
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)

from authority.token_authority import TokenAuthority
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.tokens import DATAPLANE
from tests.integration.agent_env import AgentProcess, agent_process
from tests.integration.test_agent_zone import Zone
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane
from zone_cp.xds import TYPE_URLS, desired_entries

SERVICE = "gossamer.io/service"
PROTOCOL = "gossamer.io/protocol"
DRAINING = r"^listener_manager\.total_(filter_chains|listeners)_draining$"

_handed_out: set[int] = set()


def listen_port() -> int:
    """A free port below the kernel's ephemeral range (32768 up), for something that
    will listen on it. ``test_agent.free_port`` returns an ephemeral port, which any
    outgoing connection (an Envoy's to the zone CP, to another sidecar) may take before
    the Envoy meant to listen there binds it."""
    while True:
        port = random.randint(20000, 32000)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


# -- applications ----------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle, the body waits for the peer's
    # delayed ACK of the headers (40 ms a request).
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:
        self.server.app.handle(self)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    app: HttpApp

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout, an abort) closes its connection mid-answer.
        pass


class HttpApp:
    """A test HTTP application named ``name`` (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.health_status = 200
        self.hits: Counter[str] = Counter()
        self.last_headers: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._server = _HttpServer(("127.0.0.1", 0), _Handler)
        self._server.app = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"app-{name}")

    def start(self) -> HttpApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
            self.last_headers.clear()
            self.health_status = 200

    def handle(self, request: _Handler) -> None:
        path = request.path.split("?")[0]
        key = "/" + path.strip("/").split("/")[0]
        headers = {k.lower(): v for k, v in request.headers.items()}
        length = int(headers.get("content-length") or 0)
        if length:
            request.rfile.read(length)
        with self._lock:
            self.hits[key] += 1
            count = self.hits[key]
            self.last_headers[path] = headers
        status = self._status(path, key, count)
        body = json.dumps({"instance": self.name, "path": request.path,
                           "headers": headers}).encode()
        request.send_response(status)
        request.send_header("content-type", "application/json")
        request.send_header("content-length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _status(self, path: str, key: str, count: int) -> int:
        parts = path.strip("/").split("/")
        if key == "/flaky":
            return 503 if count % 2 == 1 else 200
        if key == "/slow" and len(parts) > 1:
            time.sleep(int(parts[1]) / 1000)
        if key == "/fail-on" and len(parts) > 1 and parts[1] == self.name:
            return 503
        if key == "/health":
            return self.health_status
        return 200


class _EchoHandler(socketserver.BaseRequestHandler):
    server: _EchoServer

    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(self.server.instance.encode() + b":" + data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    instance = ""


class EchoApp:
    """A TCP echo service that prefixes every answer with its instance name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
        self._server.instance = name
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"echo-{name}")

    def start(self) -> EchoApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.port = 0
        self._server: Any = None

    async def start(self) -> OtlpReceiver:
        self._server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self

    async def stop(self) -> None:
        await self._server.stop(grace=0)

    async def Export(self, request: Any, context: Any) -> Any:
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                self.spans.extend(Span(
                    service=attrs.get("service.name", ""), name=s.name, kind=s.kind,
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_id=s.parent_span_id.hex()) for s in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


# -- sidecars --------------------------------------------------------------------------------


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
        await eventually(lambda: {f"{s.member.mesh}.{s.name}" for s in started}
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


# -- traffic ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    instance: str
    body: dict[str, Any]
    headers: httpx.Headers
    elapsed: float


async def request(client: httpx.AsyncClient, port: int, path: str = "/",
                  headers: dict[str, str] | None = None) -> Reply:
    started = time.monotonic()
    response = await client.get(f"http://127.0.0.1:{port}{path}", headers=headers)
    elapsed = time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = {"text": response.text}
    instance = body.get("instance", "") if isinstance(body, dict) else ""
    return Reply(response.status_code, instance, body, response.headers, elapsed)


async def requests(port: int, path: str = "/", count: int = 1,
                   headers: dict[str, str] | None = None, timeout: float = 5.0) -> list[Reply]:
    """``count`` sequential requests over one keep-alive client."""
    async with httpx.AsyncClient(timeout=timeout) as client:
        return [await request(client, port, path, headers) for _ in range(count)]


async def echo(port: int, data: bytes = b"ping") -> bytes:
    """One TCP connection: send ``data``, return the answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def statuses(replies: Iterable[Reply]) -> Counter[int]:
    return Counter(r.status for r in replies)


def instances(replies: Iterable[Reply]) -> Counter[str]:
    return Counter(r.instance for r in replies if r.status == 200)

