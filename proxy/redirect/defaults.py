"""The transparent proxy's well-known numbers, shared by both of its halves.

``gossamer proxy redirect install`` writes nftables rules that send a workload's traffic to
these ports, and ``gossamer proxy run --transparent`` makes Envoy (and the resolver) listen
on them, so both import them from here rather than repeating the numbers. They are Istio's
and Kuma's well-known ports, which operators of either will recognise.
"""

from __future__ import annotations

from typing import Final

OUTBOUND_PORT: Final = 15001
"""Envoy's outbound capture listener on 127.0.0.1 (``original_dst`` listener filter)."""

INBOUND_PORT: Final = 15006
"""Envoy's inbound capture listener: TCP to the workload's own addresses lands here."""

DNS_PORT: Final = 15053
"""The sidecar's resolver on 127.0.0.1, UDP and TCP: every DNS query is redirected here."""

CAPTURE_ADDRESS: Final = "127.0.0.1"
"""Where the capture listeners bind: nftables ``redirect`` sends to the primary loopback."""

SIDECAR_USER: Final = "gossamer"
"""The system user the sidecar runs as; its traffic is never redirected (no loop)."""

TABLE_FAMILY: Final = "inet"
TABLE_NAME: Final = "gossamer"
"""The one nftables table ``install`` owns (``inet gossamer``); nothing else is touched."""

INBOUND_ADDRESS: Final = "0.0.0.0"
"""Where the inbound capture listener must bind: in prerouting, nftables ``redirect``
rewrites to the receiving interface's primary address, not to 127.0.0.1."""
