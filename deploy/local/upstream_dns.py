"""The environment's "internet" DNS: a tiny authoritative server in the global's namespace.

The namespaces have no way out, so the sidecars' resolvers forward names outside ``.mesh``
here (it is the ``nameserver`` of every namespace's ``resolv.conf``). It knows a
few fixed names (``RECORDS``: ``example.org`` among them) and answers NXDOMAIN for the
rest; a test that sees ``example.org`` resolve to ``EXAMPLE_ORG`` from inside a workload
knows the query went through the sidecar's resolver and was forwarded.

``python -m deploy.local.upstream_dns --listen 172.31.0.2:53`` (UDP and TCP; dnslib's
threaded server).
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

EXAMPLE_ORG = "198.51.100.80"
RECORDS: dict[str, str] = {
    "example.org.": EXAMPLE_ORG,
    "www.example.org.": EXAMPLE_ORG,
    "upstream.test.": "198.51.100.53",
}
TTL = 60


class FixedResolver(BaseResolver):
    """A records for ``RECORDS``; NOERROR with no answer for their other types."""

    def __init__(self, records: dict[str, str]) -> None:
        self.records = {DNSLabel(name): ip for name, ip in records.items()}

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = request.q.qname
        ip = self.records.get(name)
        if ip is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(name, QTYPE.A, rdata=A(ip), ttl=TTL))
        return reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:53", metavar="IP:PORT")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    resolver = FixedResolver(RECORDS)
    logger = DNSLogger("request,reply,error", prefix=True)
    servers = [DNSServer(resolver, address=host, port=int(port), tcp=tcp, logger=logger)
               for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    print(f"upstream DNS on {args.listen} (UDP and TCP): {sorted(RECORDS)}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
