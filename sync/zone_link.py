"""The zone link's protocol constants, imported by both ends (DESIGN §4, global ↔ zone).

The global's ``global_cp.sync_server`` and the zone's ``zone_cp.sync_client`` must agree
on these: which kinds flow which way, the stream metadata that carries the zone's name and
the global's admission, and the gRPC channel options (message sizes, keepalives that each
side's pings stay within). Keeping them here, below both processes, lets neither import
the other.
"""

from __future__ import annotations

from gossamer.model.base import SyncDirection
from gossamer.model.registry import REGISTRY

# Initial metadata of a stream the global accepted: a zone writes only after seeing it.
ADMITTED = "gossamer-admitted"
# The metadata that names the zone opening a stream (beside ``authorization: Bearer``).
ZONE_METADATA = "gossamer-zone"

# Kinds the global publishes to every zone, and kinds each zone publishes to the global.
GLOBAL_KINDS = [d.name for d in REGISTRY if d.sync is SyncDirection.GLOBAL_TO_ZONES]
ZONE_KINDS = [d.name for d in REGISTRY if d.sync is SyncDirection.ZONE_TO_GLOBAL]

MAX_MESSAGE = 64 * 1024 * 1024
GRPC_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
