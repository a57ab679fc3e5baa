"""The bootstrap's connection limit in a real Envoy: beyond it a new connection is closed
unanswered and counted, while the admin (which the agent drains through) still answers.

The Envoy runs the bootstrap's lean sections (``lean_sections``) with a limit of two, and
one HTTP listener answering 200 itself (a direct response: no upstream needed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from proxy.agent.bootstrap import EnvoyLimits, lean_sections
from tests.integration.agent_env import free_port
from tests.integration.test_envoy_stats_matcher import running
from tests.waiting import eventually

_HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager")
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def answering_listener(port: int) -> dict[str, Any]:
    return {"name": "web", "stat_prefix": "web", "address": {"socket_address": {
        "address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
            "@type": _HCM, "stat_prefix": "web",
            "http_filters": [{"name": "router", "typed_config": {"@type": _ROUTER}}],
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
                "match": {"prefix": "/"},
                "direct_response": {"status": 200}}]}]}}}]}]}


@contextlib.asynccontextmanager
async def held(port: int) -> AsyncIterator[bytes]:
    """A connection that sent one request; yields the start of the answer, kept open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(REQUEST)
        await writer.drain()
        yield await asyncio.wait_for(reader.read(12), 10)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_beyond_the_limit_connections_are_closed_and_the_admin_still_answers(
        tmp_path: Path) -> None:
    port = free_port()
    doc = {"static_resources": {"listeners": [answering_listener(port)]},
           "admin": {"ignore_global_conn_limit": True},  # as the sidecar bootstrap has it
           **lean_sections(EnvoyLimits(max_connections=2))}
    async with running(doc, tmp_path) as admin:
        async with held(port) as first, held(port) as second:
            assert first == second == b"HTTP/1.1 200"
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, unanswered
            writer.close()

            async def refused() -> int:
                async with httpx.AsyncClient(timeout=2) as client:
                    text = (await client.get(f"http://127.0.0.1:{admin}/stats", params={
                        "filter": r"^listener\.web\.downstream_global_cx_overflow$"})).text
                return int(text.split(": ")[1])

            assert await eventually(refused, timeout=10, what="the overflow counted") == 1
        async with held(port) as again:  # below the limit again
            assert again == b"HTTP/1.1 200"
