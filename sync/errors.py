"""Errors of the sync protocol, split by whose fault they are (as in h11).

``RemoteProtocolError``: the peer sent something the delta protocol forbids (a request
without a type, a response naming one resource twice...). The server shells (the
global's zone sync, the zone's ADS) close the stream with its ``grpc_status``, read by
``sync.stream.abort_status``, and the peer's reconnect starts a clean session.

``LocalProtocolError``: our own code drove the engine wrongly (a request for a subscriber
that never connected, two sessions under one id). A bug here, never the peer's.

Neither is retryable on the same stream; a new stream starts from the versions the
subscriber reports, so nothing is lost by tearing one down.
"""

from __future__ import annotations

from gossamer.errors import GossamerError


class SyncError(GossamerError):
    """Base of the sync package's errors; ``grpc_status`` (as on every ``GossamerError``)
    names the ``grpc.StatusCode`` a server shell ends the stream with when the error is
    the peer's fault (``caller_fault``; see ``sync.stream.abort_status``)."""

    title = "sync error"
    grpc_status = "INTERNAL"


class RemoteProtocolError(SyncError):
    """The peer broke the protocol: its fault, and retrying the same message cannot help."""

    http_status = 400
    title = "sync protocol violation by the peer"
    caller_fault = True
    grpc_status = "INVALID_ARGUMENT"


class LocalProtocolError(SyncError):
    """Our code misused the engine: a bug on this side."""

    title = "sync engine misused"
    grpc_status = "INTERNAL"
