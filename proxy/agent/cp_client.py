"""The agent's client of the zone CP's agent API (``gossamer.sync.v1.Agent``).

One TLS channel to ``--cp`` verified against ``--cp-ca`` (the zone CP's serving CA; the
host name in ``--cp`` must be in its certificate), the dataplane token as
``authorization: Bearer`` metadata on every call. ``token`` may be replaced at any time
(the agent re-reads its token file, ``proxy.agent.token_refresh``): each new call
presents the token of that moment, a call already open keeps the one it started with.
This module is the boundary for gRPC (grpclib, ``proxy.agent.grpc_wire``): protobuf
answers become ``SignedCertificate``/``Registration``/``DnsTable`` (and the agent's
``StatusReport`` becomes an ``AgentStatus``) and a failed call (``RpcError``) becomes an
``AgentError`` (``AgentClient.translate``): a status that says "no" (bad token, wrong
mesh, name taken) is ``ControlPlaneRefused``, one that says "not now" (unreachable,
overloaded, a broken stream) is ``ControlPlaneUnavailable``, and a certificate that did
not verify is
``ControlPlaneNotVerified``, naming the address dialled and the flag that fixes it
(``--tls-host`` at the CP, or the right ``--cp-ca``: ``gossamer.pki.dial_errors``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import gossamer
from gossamer.failover import Failover
from gossamer.pki.dial_errors import explain, verify_failure
from proxy.agent.errors import (
    AgentError,
    ControlPlaneNotVerified,
    ControlPlaneRefused,
    ControlPlaneUnavailable,
)
from proxy.agent.grpc_wire import BidiCall, RpcError, channel, unary
from proxy.agent.identity import SignedCertificate
from proxy.agent.settings import DEFAULT_PORT as DEFAULT_PORT
from proxy.agent.settings import ControlPlaneAddress as ControlPlaneAddress  # re-exported
from sync.v1 import agent_pb2

SIGN_TIMEOUT = 30.0

# Statuses that mean "no" for this agent as configured. FAILED_PRECONDITION is not one:
# the CP says it when a CSR arrives while the session is re-registering, which passes.
REFUSALS = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT",
                      "ALREADY_EXISTS", "NOT_FOUND", "UNIMPLEMENTED", "OUT_OF_RANGE"})


@dataclass(frozen=True)
class Registration:
    """The zone CP's answer to the Session's first message."""

    mesh: str
    name: str
    zone: str
    node_id: str


@dataclass(frozen=True)
class DnsEntry:
    name: str
    ips: tuple[str, ...]
    ports: tuple[int, ...]


@dataclass(frozen=True)
class DnsTable:
    version: str
    entries: tuple[DnsEntry, ...]


@dataclass(frozen=True)
class StatusReport:
    """What the agent tells the CP it holds: the certificate chain it serves (public
    material only) and ``gossamer.pki.certs.bundle_digest`` of the trust bundle Envoy has."""

    chain_pem: bytes
    trust_bundle_digest: str


def status_to_proto(report: StatusReport) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(status=agent_pb2.AgentStatus(
        certificate_chain_pem=report.chain_pem,
        trust_bundle_digest=report.trust_bundle_digest))


def translate(exc: RpcError, what: str, cp: ControlPlaneAddress | None = None,
              ca_file: Path | None = None) -> AgentError:
    """A gRPC failure as the agent's error, with the control plane's own reason; a
    certificate that did not verify dialling ``cp`` (with ``--cp-ca ca_file``) says which
    flag fixes it."""
    code = exc.code
    reason = exc.details or code
    if code in REFUSALS:
        return ControlPlaneRefused(f"the control plane refused {what}: {reason} "
                                   f"({code})", code)
    failure = verify_failure(reason) if code == "UNAVAILABLE" else None
    if failure is not None and cp is not None:
        return ControlPlaneNotVerified(f"{what} failed: " + explain(
            failure, cp.target, cp.host, "--cp-ca", str(ca_file) if ca_file else None))
    return ControlPlaneUnavailable(f"{what} failed: {code}: {reason}")


def registration_from_proto(msg: agent_pb2.Registered) -> Registration:
    return Registration(mesh=msg.mesh, name=msg.name, zone=msg.zone, node_id=msg.node_id)


def dns_table_from_proto(msg: agent_pb2.DnsTable) -> DnsTable:
    return DnsTable(version=msg.version, entries=tuple(
        DnsEntry(e.name, tuple(e.ips), tuple(e.ports)) for e in msg.entries))


class AgentClient:
    """The channel and the two calls; open one per agent and ``close`` it at the end.

    With ``alternates`` (the zone CP's replicas) ``fail_over`` moves the channel to the
    next address (``gossamer.failover``); ``cp`` is the address dialled now.
    """

    def __init__(self, cp: ControlPlaneAddress, ca_pem: bytes, token: str,
                 ca_file: Path | None = None,
                 alternates: tuple[ControlPlaneAddress, ...] = ()) -> None:
        self._order = Failover([cp, *alternates])
        self.ca_file = ca_file  # where ``ca_pem`` came from (``--cp-ca``), for errors
        self._ca_pem = ca_pem
        self._dial(cp)
        self.token = token

    def _dial(self, cp: ControlPlaneAddress) -> None:
        self.cp = cp
        self._channel = channel(cp.host, cp.port, self._ca_pem)

    async def fail_over(self) -> bool:
        """The session with ``cp`` failed: dial the next address from now on. True when
        every address has failed in a row (back off). One address keeps its channel,
        which reconnects by itself."""
        round_failed = self._order.failed()
        if self._order.current != self.cp:
            old = self._channel
            self._dial(self._order.current)
            old.close()
        return round_failed

    def connected_for_long(self) -> None:
        """The session stayed up: the next failure starts a new round of addresses."""
        self._order.succeeded()

    def _metadata(self, token: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token or self.token}"),
                ("gossamer-version", gossamer.__version__))

    async def sign(self, mesh: str, name: str, csr_pem: bytes,
                   token: str | None = None) -> SignedCertificate:
        """Sign ``csr_pem`` presenting ``token`` (default: ``self.token``): the CP signs
        only with the token the Dataplane's live Session registered with."""
        request = agent_pb2.SignRequest(mesh=mesh, dataplane=name, csr_pem=csr_pem)
        try:
            answer = await unary(self._channel, "SignCertificate", request,
                                 agent_pb2.SignResponse, metadata=self._metadata(token),
                                 timeout=SIGN_TIMEOUT)
        except RpcError as exc:
            raise self.translate(exc, "the certificate signing request") from None
        expires = answer.expires_at.ToDatetime(tzinfo=dt.UTC)
        return SignedCertificate(chain_pem=answer.certificate_chain_pem,
                                 trust_bundle_pem=answer.trust_bundle_pem, expires_at=expires)

    def translate(self, exc: RpcError, what: str) -> AgentError:
        """``translate`` for a call of this client: names its address and CA file."""
        return translate(exc, what, self.cp, self.ca_file)

    def session(self) -> BidiCall:
        """A new Session stream (``read``/``write``/``cancel``) with the current token."""
        return BidiCall(self._channel, "Session", agent_pb2.AgentMessage,
                        agent_pb2.ControlPlaneMessage, self._metadata())

    async def close(self) -> None:
        self._channel.close()
