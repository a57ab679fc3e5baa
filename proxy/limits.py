"""Limits every Envoy of the mesh shares: its bootstrap (``proxy.agent.bootstrap``) and the
listeners and clusters the zone CP generates (``proxy.envoy``) set the same value, so it
lives here, in a module the agent can import without the generators.

``BUFFER_LIMIT`` is ``per_connection_buffer_limit_bytes``: how much Envoy buffers per
connection before it stops reading from it (flow control), and so the bound on a
connection's buffers under a slow reader. It is Envoy's own default, 1 MiB, pinned so
that a change of Envoy's default does not change the mesh: the 32 KiB its edge guide
suggests would cap what a retry or a fault filter can buffer (a retried request body
must fit whole) far below gRPC's 4 MiB default message size. It allocates nothing
until used: an idle Envoy's memory does not depend on it.
"""

from __future__ import annotations

BUFFER_LIMIT = 1 << 20
