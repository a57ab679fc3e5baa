"""The zone CP's gRPC port (5678): Envoy's delta ADS and the agent API, over TLS.

Its server certificate comes from the zone's own serving CA (``<data-dir>/tls/ca.pem``,
what agents are given as ``--cp-ca``).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

from gossamer.settings import split_addr
from sync.v1 import agent_pb2_grpc
from zone_cp.agent_service import AgentService
from zone_cp.xds import AdsServer

log = logging.getLogger(__name__)

# What a peer may send in one message, read before any handler runs. The largest honest
# messages measured: an Envoy reconnecting with 10,000 clusters lists their versions in
# ~1.1 MiB; a Dataplane with 64 inbounds and 1,024 outbounds registers in ~140 KiB; a
# CSR or status report is a few KiB. 4 MiB leaves room for ~35,000 resources of a type.
MAX_RECEIVE = 4 * 1024 * 1024
# Every sidecar holds two connections here (its agent's, its Envoy's), so what one
# connection costs is paid twice per sidecar: about 100 KiB of RSS with TLS in grpcio
# 1.85, 40 KiB without (tests/bench/bench_grpc_conn.py, docs/benchmarks.md "Fleet").
# The TLS frame protector's buffers are the one part a channel argument shrinks:
# 4 KiB frames instead of 16 KiB save about 20 KiB per connection, with no loss of
# throughput measured (TLS records of 4 KiB cost 0.5 % in headers and tags). The
# other arguments tried (read chunk sizes, lookahead, write buffer, BDP probe, HPACK
# tables, concurrent streams) changed nothing measurable.
TLS_FRAME = 4096
OPTIONS = [
    ("grpc.tsi.max_frame_size", TLS_FRAME),
    ("grpc.max_receive_message_length", MAX_RECEIVE),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class XdsServer:
    def __init__(self, addr: str, ads: AdsServer, agents: AgentService) -> None:
        self._addr = addr
        self.ads = ads
        self._agents = agents
        self._server: Any = None
        self.port = 0

    async def start(self, cert_pem: bytes, key_pem: bytes) -> None:
        self._server = grpc.aio.server(options=OPTIONS)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.ads, self._server)
        agent_pb2_grpc.add_AgentServicer_to_server(self._agents, self._server)
        host, port = split_addr(self._addr)
        creds = grpc.ssl_server_credentials([(key_pem, cert_pem)])
        self.port = self._server.add_secure_port(f"{host}:{port}", creds)
        if not self.port:
            raise OSError(f"the xDS server cannot listen on {self._addr}")
        await self._server.start()
        log.info("xDS and agent API (gRPC, TLS) on %s:%d", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=1)
