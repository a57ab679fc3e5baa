"""The agent's ``.mesh`` resolver: ``dns.server.DnsServer`` on ``--dns-addr``.

It starts with the agent, before registration, with an empty table (``.mesh`` names are
NXDOMAIN until the first table arrives; other names are forwarded from the start, to
the ``nameserver`` lines of ``/etc/resolv.conf`` minus the resolver itself). Each
``DnsTable`` from the Session replaces the table in place, without a restart. A table
the resolver cannot hold (``InvalidTable``) is logged and the previous one kept: the
names that resolved still resolve.
"""

from __future__ import annotations

import logging

from dns.errors import InvalidTable
from dns.server import DnsServer, ServerConfig
from dns.table import DnsTable as ResolverTable
from proxy.agent.cp_client import DnsTable
from proxy.agent.errors import ResolverCannotStart

log = logging.getLogger(__name__)

DEFAULT_DNS_ADDR = "127.0.0.1:15053"


def resolver_table(table: DnsTable) -> ResolverTable:
    """The agent API's table as the resolver's; ``InvalidTable`` when it cannot be one."""
    merged: dict[str, list[str]] = {}
    for entry in table.entries:
        merged.setdefault(entry.name, []).extend(entry.ips)
    return ResolverTable.from_mapping(merged, table.version)


class MeshResolver:
    def __init__(self, config: ServerConfig) -> None:
        self.server = DnsServer(config=config)

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    async def start(self) -> None:
        try:
            await self.server.start()
        except OSError as exc:
            host, port = self.server.config.host, self.server.config.port
            raise ResolverCannotStart(
                f"the DNS resolver cannot listen on {host}:{port}: "
                f"{exc.strerror or exc} (another sidecar's? give each its own --dns-addr)"
            ) from None

    async def stop(self) -> None:
        await self.server.stop()

    def update(self, table: DnsTable) -> bool:
        """Answer from ``table`` from now on; False (and the old table kept) if invalid."""
        try:
            self.server.update_table(resolver_table(table))
        except InvalidTable as exc:
            log.error("ignoring DNS table %s: %s", table.version, exc)
            return False
        return True
