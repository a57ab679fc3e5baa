"""The resolver's asyncio shell: UDP and TCP sockets around the pure ``Resolver``.

Each query goes to ``Resolver.handle``; this module only carries out the command that
comes back (send an ``Answer``, run a ``Forward`` through the ``Upstream`` as a task, or
``Drop``). Everything with a bound lives here (STYLE habit 2):

- forwards in flight, over UDP and TCP together (``max_forwards``): past it a query is
  answered SERVFAIL at once rather than queued behind a slow upstream;
- TCP connections (``max_tcp_connections``; one more is closed on accept), the size of
  a TCP query (``max_tcp_query``), queries in flight per connection (reading pauses at
  ``max_tcp_inflight`` and while the client does not read our answers), and an idle
  timeout that closes a connection with nothing in flight and nothing arriving;
- the upstream's own timeout (``upstream_timeout``), after which the client gets
  SERVFAIL.

UDP is read straight from a non-blocking socket, many datagrams per wake-up of the
loop (see ``_UdpListener``); TCP uses asyncio's protocol callbacks and the pure
``FrameDecoder``. The table is swapped with ``update_table`` while the server runs.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from dns.core import Answer, Drop, Forward, Resolver, ResolverConfig
from dns.errors import RemoteProtocolError, UpstreamError
from dns.framing import FrameDecoder, encode_frame
from dns.message import Transport
from dns.table import DnsTable
from dns.upstream import AiodnsUpstream, Upstream, system_nameservers

log = logging.getLogger(__name__)

UDP_BATCH = 64  # datagrams read per wake-up of the event loop
UDP_MAX_DATAGRAM = 65_535


@dataclass(frozen=True)
class ServerConfig:
    """Where to listen and the shell's bounds (see the module doc).

    ``port`` 0 picks a free port, the same for UDP and TCP. ``upstreams``: ``host:port``
    strings (``[v6]:port`` for IPv6); None reads ``resolv_conf``.
    """

    host: str = "127.0.0.1"
    port: int = 15053
    upstreams: tuple[str, ...] | None = None
    resolv_conf: str = "/etc/resolv.conf"
    upstream_timeout: float = 2.0
    max_forwards: int = 1024
    max_tcp_connections: int = 256
    max_tcp_query: int = 4096
    max_tcp_inflight: int = 32
    tcp_idle_timeout: float = 10.0
    resolver: ResolverConfig = field(default_factory=ResolverConfig)

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.host)  # a literal address: we bind, we do not resolve
        if not 0 <= self.port <= 65_535:
            raise ValueError(f"port {self.port} out of range")
        if min(self.max_forwards, self.max_tcp_connections, self.max_tcp_inflight) < 1:
            raise ValueError("bounds must be at least 1")


class DnsServer:
    """The ``.mesh`` resolver on one address, UDP and TCP. Use ``async with`` or start/stop."""

    def __init__(
        self,
        table: DnsTable | None = None,
        config: ServerConfig | None = None,
        *,
        upstream: Upstream | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.resolver = resolver or Resolver(table, config=self.config.resolver)
        if resolver is not None and table is not None:
            resolver.update_table(table)
        self._upstream = upstream
        self._own_upstream = upstream is None
        self._udp: _UdpListener | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[_TcpConnection] = set()
        self.address: tuple[str, int] = (self.config.host, self.config.port)

    def update_table(self, table: DnsTable) -> None:
        """Answer from ``table`` from the next query on."""
        self.resolver.update_table(table)
        log.info("DNS table updated: %d names, version %r", len(table), table.version)

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await self._bind()
            if self._upstream is None:
                self._upstream = AiodnsUpstream(
                    self._upstream_servers(), timeout=self.config.upstream_timeout
                )
        except BaseException:
            await self.stop()
            raise
        log.info("DNS resolver listening on %s:%d (UDP, TCP)", *self.address)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for connection in list(self._connections):
                connection.close()
            await self._tcp.wait_closed()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._upstream is not None and self._own_upstream:
            await self._upstream.close()
            self._upstream = None

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.config.host, self.config.port
        # With port 0, the kernel picks a free UDP port; TCP may find it taken, so try a few.
        for attempt in range(20):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
            udp = _UdpListener(self, sock)
            bound = sock.getsockname()[1]
            try:
                self._tcp = await loop.create_server(
                    lambda: _TcpConnection(self), host, bound, reuse_address=True
                )
            except OSError as exc:
                udp.close()
                if port != 0 or exc.errno != errno.EADDRINUSE or attempt == 19:
                    raise
                continue
            self._udp = udp
            self.address = (host, bound)
            return

    def _upstream_servers(self) -> list[str]:
        if self.config.upstreams is not None:
            return list(self.config.upstreams)
        host, port = self.address
        listening = ipaddress.ip_address(host)
        servers = []
        for server in system_nameservers(self.config.resolv_conf):
            address = ipaddress.ip_address(server.rsplit(":", 1)[0].strip("[]"))
            ours = address == listening or (listening.is_unspecified and address.is_loopback)
            if port == 53 and ours:
                log.warning("not forwarding to %s: that is this resolver", server)
                continue
            servers.append(server)
        if not servers:
            log.warning("no upstream resolvers: names outside the mesh will get SERVFAIL")
        return servers

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run ``coroutine`` as a tracked task, or None (closed) when at ``max_forwards``."""
        if len(self._tasks) >= self.config.max_forwards:
            coroutine.close()
            return None
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def forward(self, forward: Forward) -> Answer:
        """Resolve ``forward`` upstream; SERVFAIL (or upstream's rcode) when that fails."""
        assert self._upstream is not None, "forward() before start()"
        try:
            reply = await self._upstream.resolve(forward.question)
        except UpstreamError as exc:
            log.debug("forwarding %s failed: %s", forward.question.name, exc)
            return self.resolver.fail(forward, exc.rcode)
        return self.resolver.complete(forward, reply)


class _UdpListener:
    """The UDP socket, read in batches.

    asyncio's datagram transport reads one datagram per wake-up of the event loop;
    reading until the socket is empty (up to ``UDP_BATCH``) halves the cost per query
    under load. Answers are sent at once; when the socket's send buffer is full the
    answer is dropped, as the network may drop any datagram, and the client retries.
    """

    def __init__(self, server: DnsServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._read_ready)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _read_ready(self) -> None:
        # The hot loop: a query and its answer cost two system calls and a call of
        # Resolver.handle; everything else is kept out of it (no task, no lookups).
        recvfrom, handle, send = self.sock.recvfrom, self.server.resolver.handle, self._send
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(UDP_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors from earlier sends land here
                log.debug("UDP receive error: %s", exc)
                return
            command = handle(data, Transport.UDP)
            if type(command) is Answer:
                send(command, addr)
            else:
                self._command(command, addr)

    def _command(self, command: Answer | Forward | Drop, addr: Any) -> None:
        if isinstance(command, Answer):
            self._send(command, addr)
        elif isinstance(command, Forward):
            if self.server.spawn(self._forward(command, addr)) is None:
                self._send(self.server.resolver.fail(command), addr)
        elif isinstance(command, Drop):
            log.debug("dropped a datagram from %s: %s", addr, command.reason)

    async def _forward(self, forward: Forward, addr: Any) -> None:
        self._send(await self.server.forward(forward), addr)

    def _send(self, answer: Answer, addr: Any) -> None:
        if self.sock.fileno() < 0:
            return
        try:
            self.sock.sendto(answer.data, addr)
        except (BlockingIOError, InterruptedError):
            log.debug("UDP send buffer full: dropped an answer to %s", addr)
        except OSError as exc:
            log.debug("UDP send to %s failed: %s", addr, exc)


class _TcpConnection(asyncio.Protocol):
    """One client connection: frames in, answers out, possibly out of order (RFC 7766)."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.config = server.config
        self.decoder = FrameDecoder(self.config.max_tcp_query)
        self.transport: asyncio.Transport | None = None
        self.inflight: set[asyncio.Task[None]] = set()
        self._idle: asyncio.TimerHandle | None = None
        self._write_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if len(self.server._connections) >= self.config.max_tcp_connections:
            log.warning("too many DNS TCP connections; closing a new one")
            transport.abort()
            return
        self.server._connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        for task in self.inflight:
            task.cancel()
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._arm_idle()
        try:
            messages = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            log.debug("closing a DNS TCP connection: %s", exc)
            self.close()
            return
        for message in messages:
            self._handle(message)
        self._flow()

    def _handle(self, message: bytes) -> None:
        command = self.server.resolver.handle(message, Transport.TCP)
        if isinstance(command, Answer):
            self._send(command)
        elif isinstance(command, Forward):
            task = self.server.spawn(self._forward(command))
            if task is None:
                self._send(self.server.resolver.fail(command))
            else:
                self.inflight.add(task)
                task.add_done_callback(self._done)
        elif isinstance(command, Drop):
            # Over TCP a message we cannot answer leaves the stream in doubt: close it.
            log.debug("closing a DNS TCP connection: %s", command.reason)
            self.close()

    async def _forward(self, forward: Forward) -> None:
        self._send(await self.server.forward(forward))

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        self._flow()

    def _send(self, answer: Answer) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(answer.data))

    def _flow(self) -> None:
        """Read while the client reads our answers and few of its queries are in flight."""
        if self.transport is None or self.transport.is_closing():
            return
        busy = self._write_paused or len(self.inflight) >= self.config.max_tcp_inflight
        if busy and self.transport.is_reading():
            self.transport.pause_reading()
        elif not busy and not self.transport.is_reading():
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._flow()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._flow()

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.config.tcp_idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        if self.inflight:
            self._arm_idle()  # an answer is still coming: not idle
            return
        log.debug("closing an idle DNS TCP connection")
        self.close()
