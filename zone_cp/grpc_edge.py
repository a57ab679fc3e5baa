"""The zone CP's gRPC edge: what the agent API and the ADS read from a call, and how a
``GossamerError`` is answered.

Inside the zone CP a refusal is a ``GossamerError`` (``gossamer.errors``) that names its
gRPC status (``grpc_status``); only the servicers (``zone_cp.agent_service``,
``zone_cp.xds``) turn it into a ``grpc.StatusCode``, here.
"""

from __future__ import annotations

import grpc

from gossamer.errors import GossamerError


def bearer(context: grpc.aio.ServicerContext) -> str | None:
    """The bearer token of the call's ``authorization`` metadata, or None."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and str(value).lower().startswith("bearer "):
            return str(value)[7:].strip()
    return None


def status_code(exc: GossamerError) -> grpc.StatusCode:
    """The status a gRPC server answers ``exc`` with (its ``grpc_status``)."""
    return grpc.StatusCode[exc.grpc_status]
